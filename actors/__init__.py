"""What runs inside a supervised node: in-process actors and (later) OS-process agents."""

from ._function import function_actor
from ._mailbox import Actor, ActorRef, Mailbox, actor

__all__ = ["Actor", "ActorRef", "Mailbox", "actor", "function_actor"]
