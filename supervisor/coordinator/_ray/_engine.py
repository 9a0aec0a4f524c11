"""Ray as a placement engine: connect (or start a private loopback head), host actors,
and await Ray's futures from trio or asyncio without a thread per pending call.

Measured here (``notes/ray.md``): a head binds every interface unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; ``ray.init()`` with no address may silently
join someone else's cluster; ``ray stop`` kills every Ray process of the user. So a
private head is ``address="local"`` on 127.0.0.1, and we stop only what we started: its
processes carry a token of ours, swept at close and, should the coordinator die, by
the runtime's watchdog.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import psutil

from actors import TOKEN_VAR, in_family, new_token, watch_token
from supervisor import ZiggieError

#: Set before a head starts: loopback only, no usage report, and an explicit auth mode.
SAFE_ENV: Mapping[str, str] = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
_NODE_ID = re.compile(r"[0-9a-f]{56}")


class RayUnavailable(ZiggieError, ValueError):
    """A Ray placement was asked for, but Ray is not installed or not connected."""


class PlacementRefused(ZiggieError, ValueError):
    """No node of the cluster could ever satisfy the placement."""


def import_ray() -> Any:
    """Ray, imported with the safe environment (Ray reads some of it at import time)."""
    for name, value in SAFE_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            "Ray placement needs the 'ray' extra: pip install 'ziggie[ray]'"
            f" ({exc.name} is missing)"
        ) from exc
    return ray


class RayEngine:
    """One coordinator's use of a Ray cluster: *address* is ``local`` (a private head,
    stopped at :meth:`close`) or a cluster's address (``HOST:PORT`` or ``auto``)."""

    def __init__(self, address: str, *, token: str) -> None:
        self.address = address
        self.token = token
        self._head_token: str | None = None
        self._connected_here = False
        self.ray: Any = None
        self.cluster: str | None = None  #: the GCS address we are connected to
        self._spares: dict[str, Any] = {}  #: a warm host per set of host arguments
        self._host_class: Any = None

    # -- lifetime --------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, or start the private head (blocking: run it in a worker thread)."""
        ray = import_ray()
        self.ray = ray
        if ray.is_initialized():  # an embedding program connected already: share it
            self.cluster = ray.get_runtime_context().gcs_address
            return
        if self.address == "local":
            self._start_head(ray)
        else:
            ray.init(
                address=self.address,
                log_to_driver=False,
                configure_logging=False,
                namespace="ziggie",
            )
        self._connected_here = True
        self.cluster = ray.get_runtime_context().gcs_address

    def _start_head(self, ray: Any) -> None:
        # Every process of the head inherits this token: our watchdog kills them all if
        # we die (kill -9 leaves Ray's agents running for a minute otherwise), and close()
        # sweeps what ray.shutdown() leaves.
        self._head_token = new_token(self.token)
        watch_token(self._head_token)
        saved = os.environ.get(TOKEN_VAR)
        os.environ[TOKEN_VAR] = self._head_token
        try:
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
                namespace="ziggie",
            )
        finally:
            if saved is None:
                os.environ.pop(TOKEN_VAR, None)
            else:
                os.environ[TOKEN_VAR] = saved

    def close(self) -> None:
        """Disconnect; a private head is shut down and its processes swept."""
        for spare in self._spares.values():
            self.kill(spare)
        self._spares.clear()
        if self._connected_here and self.ray is not None:
            self.ray.shutdown()
            self._connected_here = False
        if self._head_token is not None:
            sweep(self._head_token)
            self._head_token = None

    # -- placing host actors ---------------------------------------------------------

    def options(self, resources: Mapping[str, float], node: str | None) -> dict[str, Any]:
        """Actor options for a placement; refused at once if no node could ever host it."""
        res = dict(resources)
        opts: dict[str, Any] = {
            "max_restarts": 0,  # restarts are the coordinator's policy, never Ray's
            "max_concurrency": 64,
            "num_cpus": res.pop("CPU", 0),
            "num_gpus": res.pop("GPU", 0),
        }
        by_id = node is not None and _NODE_ID.fullmatch(node) is not None
        if node is not None and not by_id:
            res[f"node:{node}"] = 0.001  # Ray's built-in resource of the node at that address
        if res:
            opts["resources"] = res
        self.ensure_feasible(opts, node)
        if by_id and node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return opts

    def _check_feasible(self, opts: Mapping[str, Any], node: str | None) -> None:
        wanted = {"CPU": opts["num_cpus"], "GPU": opts["num_gpus"], **opts.get("resources", {})}
        wanted = {k: v for k, v in wanted.items() if v}
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        if node is not None and _NODE_ID.fullmatch(node):
            nodes = [n for n in nodes if n.get("NodeID") == node]
            if not nodes:
                raise PlacementRefused(f"placement.node: no live node {node!r} in the cluster")
        for n in nodes:
            have = n.get("Resources", {})
            if all(have.get(k, 0) >= v for k, v in wanted.items()):
                return
        raise PlacementRefused(
            f"placement: no node of the cluster has {wanted}"
            f" (nodes: {[n.get('NodeManagerAddress') for n in nodes]})"
        )

    def host(self, opts: Mapping[str, Any], *args: Any, fresh: bool = False) -> Any:
        """A new host actor (owned by this driver: it dies with the coordinator).

        A placement that holds no resources is served from a spare host started ahead,
        and the next spare starts at once: a deploy or a restart then skips Ray's cold
        actor start (0.4-0.7 s here). A placement with resources never idles on them.
        """
        if self._host_class is None:  # made once: each ray.remote() exports the class anew
            from ._host import AgentHost

            self._host_class = self.ray.remote(AgentHost)
        cls = self._host_class
        if fresh or not _holds_nothing(opts):
            return cls.options(**opts).remote(*args)
        key = repr(args)
        actor = self._spares.pop(key, None) or cls.options(**opts).remote(*args)
        self._spares[key] = cls.options(**opts).remote(*args)
        return actor

    def kill(self, actor: Any) -> None:
        with contextlib.suppress(Exception):  # already dead: nothing to do
            self.ray.kill(actor, no_restart=True)

    async def call(self, ref: Any) -> Any:
        """Await an ``ObjectRef`` from trio or asyncio; cancelling stops only the wait.

        Ray completes futures on its own I/O thread: the wake-up is *scheduled* on our
        loop and never waited for there, or that thread would stall (and could deadlock
        with a ``ray.kill`` our loop makes meanwhile).
        """
        future = ref.future()
        done = anyio.Event()
        schedule = _scheduler()
        future.add_done_callback(lambda _: schedule(done.set))
        await done.wait()
        return future.result()

    def ensure_feasible(self, opts: Mapping[str, Any], node: str | None) -> None:
        try:
            self._check_feasible(opts, node)
        except PlacementRefused:
            raise
        except Exception as exc:  # the head is unreachable: a clear refusal, not a crash
            raise PlacementRefused(f"placement: the Ray cluster did not answer ({exc})") from exc


def _scheduler() -> Callable[[Callable[[], object]], None]:
    """A thread-safe, non-blocking "run this soon on the current event loop"."""
    import trio

    try:
        token = trio.lowlevel.current_trio_token()
    except RuntimeError:  # not in trio: asyncio
        token = None
    if token is not None:

        def on_trio(fn: Callable[[], object]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

        return on_trio
    import asyncio

    loop = asyncio.get_running_loop()

    def on_asyncio(fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(fn)

    return on_asyncio


def _holds_nothing(opts: Mapping[str, Any]) -> bool:
    return not (
        opts.get("num_cpus")
        or opts.get("num_gpus")
        or opts.get("resources")
        or "scheduling_strategy" in opts
    )


def family_processes(tok: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) carrying token *tok* or one made under it."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if (
                proc.pid != os.getpid()
                and in_family(proc.environ().get(TOKEN_VAR), tok)
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def sweep(tok: str) -> list[int]:
    """SIGKILL every process carrying token *tok* (what ray.shutdown left of a head)."""
    killed = []
    for proc in family_processes(tok):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
            killed.append(proc.pid)
    return killed
