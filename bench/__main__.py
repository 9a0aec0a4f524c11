"""``make bench``: every benchmark table, one after the other."""

from bench import kernel


def main() -> None:
    kernel.main()


if __name__ == "__main__":
    main()
