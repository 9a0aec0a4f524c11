"""Plain async functions as supervised children."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from supervisor import ChildContext, ChildSpec, Restart, Shutdown


def function_actor(
    id: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    pass_context: bool = False,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown = Shutdown(5.0),
    timeout: float | None = None,
    significant: bool = False,
    level: str | None = None,
) -> ChildSpec:
    """A child spec running ``await fn(*args)``, started as soon as it is scheduled.

    With ``pass_context=True`` the call is ``fn(ctx, *args)``, for functions that want their
    id, path, deadline or :meth:`ChildContext.shielded` cleanup.
    """

    async def start(ctx: ChildContext) -> None:
        ctx.started()
        if pass_context:
            await fn(ctx, *args)
        else:
            await fn(*args)

    return ChildSpec(
        id=id,
        start=start,
        restart=restart,
        shutdown=shutdown,
        timeout=timeout,
        significant=significant,
        level=level,
    )
