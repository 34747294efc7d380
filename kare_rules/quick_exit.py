"""A process that has done its work exits without Python's last full garbage collection."""

from __future__ import annotations

import atexit
import gc

_installed = False


def skip_final_collection() -> None:
    """At exit, Python clears every module and then collects every object it tracks once more, to run the
    finalizers of objects caught in reference cycles. A process that imported Dagster tracks about 240,000
    objects and spent 0.5–0.8 s there after the run had finished (benchmarks/bench_pipeline.py: a third of
    Dagster's cost over `kare run` at 1M accounts); a `kare run` process, about 80,000 objects and 0.1 s.

    Nothing of ours waits for that collection: warehouse transactions commit or roll back, and connections and
    files close, explicitly before exit; standard streams and logging are flushed by Python either way. So at
    exit every object still alive is frozen (gc.freeze), out of reach of that collection. Safe to call more
    than once."""
    global _installed
    if not _installed:
        atexit.register(gc.freeze)
        _installed = True
