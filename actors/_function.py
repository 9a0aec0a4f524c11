"""Plain async functions as supervised children."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Unpack

from supervisor import ChildContext, ChildSpec, SpecOptions


def function_spec(
    id: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    pass_context: bool = False,
    **options: Unpack[SpecOptions],
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

    return ChildSpec(id=id, start=start, **options)
