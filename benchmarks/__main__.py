"""Run every benchmark (`python -m benchmarks`) or the named ones (`python -m benchmarks categorize sql`).

Each `benchmarks/bench_<name>.py` module has a `main(argv)`; sizes come from KARE_BENCH_SIZES
(comma-separated account counts) for every benchmark.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).resolve().parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = available()
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python -m benchmarks [NAME ...]   (names: {', '.join(names)}; default: all)")
        return 0
    unknown = [a for a in argv if a not in names]
    if unknown:
        print(f"unknown benchmark {', '.join(map(repr, unknown))}; choose from: {', '.join(names)}", file=sys.stderr)
        return 2
    failed = []
    for name in argv or names:
        print(f"== benchmark {name} (benchmarks/bench_{name}.py) ==", flush=True)
        start = time.perf_counter()
        try:
            code = importlib.import_module(f"benchmarks.bench_{name}").main([])
        except SystemExit as exc:  # a void run (engines disagree, a child failed): report it, go on
            if exc.code not in (0, None):
                print(exc.code if isinstance(exc.code, str) else f"exited with {exc.code}", file=sys.stderr)
                failed.append(name)
        else:
            if isinstance(code, int) and code:
                failed.append(name)
        print(f"== {name} done in {time.perf_counter() - start:.0f} s ==\n", flush=True)
    if failed:
        print(f"failed or void: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
