"""Agent programs shipped with ziggie (run as processes, e.g. ``python -m supervisor.agents.demo``).

They are clients of a coordinator like any other agent: the protocol and the client only.
"""
