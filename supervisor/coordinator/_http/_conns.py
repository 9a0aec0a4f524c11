"""Connections: our accept loop caps how many are open; Hypercorn speaks HTTP on each.

Hypercorn has no limit on connections, and an idle connection never reaches the ASGI
app, so the cap lives where connections are accepted. Past it, a new connection gets a
short ``503`` problem and is closed at once: idle sockets of a caller without a token
hold at most ``max_connections`` descriptors, never the ones the coordinator needs to
open a log or start an agent.

The accept loop is backend-neutral; handing a socket to Hypercorn's per-connection
server is one small function per backend.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import sniffio
from hypercorn.config import Config
from hypercorn.utils import wrap_app

#: Errors of the machine, not of one connection: wait a little before accepting again
#: (the listening socket stays readable: retrying at once would spin).
_ACCEPT_BACKOFF: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BUSY_BODY: Final = (
    b'{"title":"Service unavailable","status":503,'
    b'"detail":"too many open connections; retry later"}'
)
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/problem+json\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n" + _BUSY_BODY
)

Serve = Callable[[socket.socket], Awaitable[None]]


class Connections:
    """The open connections of one API server, at most *limit* at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0  #: connections being served now
        self.refused = 0  #: connections closed at once because *limit* were open
        self._idle: anyio.Event | None = None

    async def serve(self, app: Any, config: Config, sock: socket.socket, stop: anyio.Event) -> None:
        """Accept on the listening *sock* until *stop*; then let open connections finish
        for up to ``config.graceful_timeout`` seconds, and cut what is left."""
        handle, terminated = _backend(wrap_app(app, config.wsgi_max_body_size, None), config)
        async with anyio.create_task_group() as conns:
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(self._accept, sock, conns, handle)
                await stop.wait()
                accepting.cancel_scope.cancel()
            await terminated()  # idle keep-alive connections close, busy ones after
            with anyio.move_on_after(config.graceful_timeout):
                while self.open:
                    self._idle = anyio.Event()
                    await self._idle.wait()
            conns.cancel_scope.cancel()

    async def _accept(self, sock: socket.socket, conns: Any, handle: Serve) -> None:
        sock.setblocking(False)
        while True:
            await anyio.wait_readable(sock)
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_BACKOFF:
                    await anyio.sleep(0.1)
                continue
            if self.open >= self.limit:
                self.refused += 1
                _refuse(conn)
                continue
            self.open += 1
            conns.start_soon(self._one, conn, handle)

    async def _one(self, conn: socket.socket, handle: Serve) -> None:
        # *handle* owns *conn* (it closes it): the event loop may still watch its fd.
        try:
            await handle(conn)
        except Exception:  # one connection's trouble is its own, never the server's
            pass
        finally:
            self.open -= 1
            if self._idle is not None and not self.open:
                self._idle.set()


def _refuse(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(_BUSY)
    conn.close()


def _backend(app: Any, config: Config) -> tuple[Serve, Callable[[], Awaitable[None]]]:
    """Hypercorn's per-connection server for the running backend, and its stop signal."""
    if sniffio.current_async_library() == "trio":
        import trio
        from hypercorn.trio.tcp_server import TCPServer as TrioServer
        from hypercorn.trio.worker_context import WorkerContext as TrioContext

        trio_context = TrioContext(None)

        async def trio_handle(conn: socket.socket) -> None:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
            try:
                await TrioServer(app, config, trio_context, {}, stream)  # type: ignore[arg-type]
            finally:
                await trio.aclose_forcefully(stream)

        return trio_handle, trio_context.terminated.set

    import asyncio

    from hypercorn.asyncio.tcp_server import TCPServer as AsyncioServer
    from hypercorn.asyncio.worker_context import WorkerContext as AsyncioContext

    asyncio_context = AsyncioContext(None)

    async def asyncio_handle(conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except BaseException:
            conn.close()
            raise
        try:
            await AsyncioServer(
                app, asyncio.get_running_loop(), config, asyncio_context, {}, reader, writer
            )
        finally:
            writer.close()  # the transport closes the socket, once the loop lets go of it

    return asyncio_handle, asyncio_context.terminated.set
