"""The Dagster materialization of one organization's run, as a process (benchmarks/bench_pipeline.py times it).

    python -m benchmarks.dagster_run ORG RULES_DIR INPUT AS_OF WAREHOUSE

Prints one JSON line: {"seconds": <dg.materialize alone, imports excluded>}. Exits with NOT_READY
(printing "skipped: pipelines not ready") while the Dagster layer cannot run the engine's tables.
"""

from __future__ import annotations

import json
import sys
import time

NOT_READY = 3


def materialize(org: str, rules_dir: str, source: str, as_of: str, warehouse: str) -> float:
    """Materialize the published tables of `org` as of `as_of` with dg.materialize; its seconds.

    STUB until pipelines/kare is ported to the run engine (issue 10, branch h5-dagster). To wire it:
    import the multi-asset that produces kare/account_categories … kare/runs (and the source assets it
    depends on: the organization's account source and its rule file) from pipelines.kare.assets, then
        dg.materialize([*those assets], resources=<the kare resource with warehouse=warehouse,
                       input=source, rules_dir=rules_dir>, partition_key=<the org × date key of
                       (org, as_of)> or run_config=<explicit as_of>, instance=dg.DagsterInstance.ephemeral())
    and raise SystemExit(1) unless the result's success is true. Time only that call.
    """
    raise NotReady("pipelines.kare.assets does not yet expose the engine's multi-asset")


class NotReady(Exception):
    """The Dagster layer cannot yet run the engine's tables."""


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m benchmarks.dagster_run ORG RULES_DIR INPUT AS_OF WAREHOUSE", file=sys.stderr)
        return 2
    try:
        start = time.perf_counter()
        seconds = materialize(*argv)
    except (NotReady, ImportError) as exc:
        print(f"skipped: pipelines not ready ({exc})")
        return NOT_READY
    print(json.dumps({"seconds": seconds or time.perf_counter() - start}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
