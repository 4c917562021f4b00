"""``python -m bench [SCENARIO ...] [--quick] [--out DIR] [--list]``: the benchmark suite."""

from bench.suite import main

if __name__ == "__main__":
    main()
