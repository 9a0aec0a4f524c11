"""Exactly once, per caller: what the journal already says of a request id.

A request id names one request of the caller that sent it first. The same request from
that caller gets the recorded answer again, never a second run; anything else under the
id (another caller, or another request of the same caller) is a ``conflict`` and never
sees that answer: an agent cannot read the operator's answers by guessing their ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor import EventLog
from supervisor.protocol import DeploymentRequest, DeploymentResponse

from ._callers import Caller
from ._journal import Journal
from ._replies import conflict, forbidden


@dataclass(frozen=True, slots=True)
class Answer:
    """What a transport writes back: the recorded JSON, and whether it was a re-send."""

    body: str
    response: DeploymentResponse | None  #: None for a duplicate (only its JSON is kept)
    duplicate: bool = False


def prior_answer(
    journal: Journal, events: EventLog, request: DeploymentRequest, caller: Caller, digest: str
) -> Answer | None:
    """The answer *request* (of *digest*, from *caller*) has already, or None: do it.

    None also for a request recorded but never answered (a crash cut it short): it runs
    again, as it never finished.
    """
    seen = journal.seen(request.request_id)
    if seen is None:
        return None
    if seen.caller != caller or seen.fingerprint not in (None, digest):
        events.emit("request_conflict", request_id=request.request_id, caller=caller.agent_id)
        refused = conflict(request)
        return Answer(refused.model_dump_json(indent=2), refused)
    if seen.response is None:
        return None
    events.emit("duplicate_request", request_id=request.request_id)
    return Answer(seen.response, None, duplicate=True)


def answered(
    journal: Journal,
    request: DeploymentRequest,
    caller: Caller,
    digest: str,
    response: DeploymentResponse,
) -> Answer:
    """*response* to a request that changed nothing, recorded with it in one write."""
    body = response.model_dump_json(indent=2)
    journal.record_answered(
        request.request_id, request.action, body, caller=caller, fingerprint=digest
    )
    return Answer(body, response)


def received(events: EventLog, request: DeploymentRequest, caller: Caller) -> None:
    """The event of a request about to be carried out, and who asked."""
    events.emit(
        "request_received",
        request_id=request.request_id,
        action=request.action,
        caller=caller.agent_id,
        parent_agent=request.parent_agent,
        target_agent_id=request.target_agent_id
        or (request.agent_spec.id if request.agent_spec else None),
    )


def refused(
    journal: Journal, request: DeploymentRequest, caller: Caller, digest: str, why: str
) -> Answer:
    """*caller* may not make *request*: ``forbidden``, recorded as its answer."""
    return answered(journal, request, caller, digest, forbidden(request, why))
