"""``make bench``: every benchmark table, one after the other."""

from bench import confinement, dashboard, filequeue, http, kernel, nesting, process, ray, tracing


def main() -> None:
    kernel.main()
    process.main()
    confinement.main()
    filequeue.main()
    nesting.main()
    http.main()
    tracing.main()
    dashboard.main()
    ray.main()


if __name__ == "__main__":
    main()
