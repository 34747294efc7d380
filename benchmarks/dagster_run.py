"""The Dagster materialization of one organization's run, as a process (benchmarks/bench_pipeline.py times it).

    python -m benchmarks.dagster_run ORG RULES_DIR INPUT AS_OF WAREHOUSE

Materializes the `kare_run` multi-asset of pipelines.kare.assets (the six published tables, one engine
step) for the partition (ORG, AS_OF) with `dg.materialize` on an ephemeral instance, as the UI or a
schedule would launch it, and prints one JSON line: {"seconds": <dg.materialize alone, imports
excluded>}. Exits 1 when the materialization fails, NOT_READY when the Dagster layer cannot be
imported ("skipped: pipelines not ready").
"""

from __future__ import annotations

import json
import os
import sys
import time

NOT_READY = 3
FIRST_DATE = "2020-01-01"  # daily partitions from here, so any benchmark date is a partition


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m benchmarks.dagster_run ORG RULES_DIR INPUT AS_OF WAREHOUSE", file=sys.stderr)
        return 2
    org, rules_dir, source, as_of, warehouse = argv
    # The partitions are read from the environment when pipelines is imported: the organizations of
    # RULES_DIR, one date partition per day.
    os.environ.update({"KARE_RULES_DIR": rules_dir, "KARE_CADENCE": "daily", "KARE_START_DATE": FIRST_DATE})
    try:
        import dagster as dg

        from pipelines.kare import assets
        from pipelines.kare.partitions import partition_key
        from pipelines.kare.resources import KareSettings
    except ImportError as exc:
        print(f"skipped: pipelines not ready ({exc})")
        return NOT_READY
    settings = KareSettings(rules_dir=rules_dir, warehouse=warehouse, input=source)
    start = time.perf_counter()
    result = dg.materialize(
        [assets.kare_run], partition_key=partition_key(org, as_of), resources={"kare": settings},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        print(f"the Dagster materialization of {org} as of {as_of} failed: {failures}", file=sys.stderr)
        return 1
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
