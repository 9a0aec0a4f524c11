"""A private loopback Ray head for one test session (``python -m tests.ray_head TOKEN``).

Started through the coordinator's own engine (``RayEngine("local")``), so the session
exercises the very path ``ziggie serve --ray local`` takes. It prints the cluster's
address, then lives until its stdin closes; its processes carry a token of the family
*TOKEN*, by which the session's fixture sweeps whatever outlives it.
"""

from __future__ import annotations

import sys

from supervisor.coordinator._ray import RayEngine


def main() -> None:
    engine = RayEngine("local", token=sys.argv[1])
    engine.connect()
    print(engine.cluster, flush=True)
    sys.stdin.read()  # EOF: the session is over (or the test run died)
    engine.close()


if __name__ == "__main__":
    main()
