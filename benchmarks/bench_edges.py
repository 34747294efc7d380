"""Early warning (issue 11): categories with explanations and edges against the hand-written chain, in one process.

    python -m benchmarks.bench_edges [--sizes 1000000,10000000] [--repeat 3]
    (or KARE_BENCH_SIZES=N,N; default 1,000,000 and 10,000,000)

The accounts and the hand-written pl.when/then chain are those of benchmarks/bench_categorize.py (the
bench rules: 12 predicates, one `days_since`, six numeric quantities). Per size, best of `--repeat`
runs, interleaved so that load from other work on the machine falls on all three alike:
- (a) hand: the hand-written chain, key and `category`;
- (c) categorize(rules, df, as_of, explain=True): also `matched_rule`, `reason`, `overlaps`;
- (e) categorize(rules, df, as_of, explain=True, edges=True): also the seven edge columns.
Before anything is printed: (a), (c) and (e) must give every account the same category, every reason
must be about its own category, and on a sample of accounts the next move is checked by categorizing
them on the day before it (same category) and on the day itself (next_category), and the edges of the
sample computed alone must equal those of the whole run. A disagreement voids the run.
Targets (issue 11): c/a ≤ 3x, e/a ≤ 6x.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable

import polars as pl

from benchmarks.baseline import bench_chain
from benchmarks.bench_categorize import (
    AS_OF,
    BENCH_RULES,
    accounts,
    disagreements,
    misexplained,
    peak_mib,
    size_parser,
    sizes_of,
)
from kare_rules import model as m
from kare_rules.edges import EDGE_COLUMNS
from kare_rules.engine import categorize
from kare_rules.loader import load_rules

TARGET_EXPLAIN, TARGET_EDGES = 3.0, 6.0
SAMPLE = 200  # accounts whose next move is checked day by day


def measure(rules: m.RuleSet, df: pl.DataFrame, repeat: int) -> dict:
    """Best-of-`repeat` seconds for (a) hand, (c) explain, (e) explain + edges; SystemExit when they disagree."""
    key = rules.key
    runs: dict[str, Callable[[], pl.DataFrame]] = {
        "hand": lambda: df.lazy().select(pl.col(key), bench_chain(AS_OF)).collect(),
        "explain": lambda: categorize(rules, df, AS_OF, explain=True),
        "edges": lambda: categorize(rules, df, AS_OF, explain=True, edges=True),
    }
    best = dict.fromkeys(runs, float("inf"))
    results: dict[str, pl.DataFrame] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            results.pop(name, None)  # free the previous result before building the next
            start = time.perf_counter()
            results[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    hand = results.pop("hand")
    for name, result in results.items():
        wrong = disagreements(hand, result, key) or misexplained(result)
        if wrong:
            raise SystemExit(f"categorize ({name}) disagrees with the hand-written chain or its reasons on {wrong:,} "
                             f"of {df.height:,} accounts: the benchmark is void")  # fmt: skip
    check_edges(rules, df, results["edges"])
    moving = results["edges"]["next_move_on"].is_not_null().mean()
    with_edge = results["edges"]["edge_column"].is_not_null().mean()
    return {**best, "rows": df.height, "moving": moving, "with_edge": with_edge}


def check_edges(rules: m.RuleSet, df: pl.DataFrame, result: pl.DataFrame) -> None:
    """The next move of a sample of accounts, day by day around it; the sample's edges computed alone."""
    key = rules.key
    movers = result.filter(pl.col("next_move_on").is_not_null()).head(SAMPLE)
    rows = df.join(movers.select(key), on=key, how="semi")
    for day, group in movers.group_by("next_move_on"):
        ids = group.select(key)
        accounts = rows.join(ids, on=key, how="semi")
        before = categorize(rules, accounts, day[0] - dt.timedelta(days=1), explain=False)
        on = categorize(rules, accounts, day[0], explain=False)
        expected = group.select(key, "category", "next_category")
        got = before.select(key, "category").join(on.select(key, pl.col("category").alias("next_category")), on=key)
        if expected.sort(key).rows() != got.sort(key).rows():
            raise SystemExit(f"next_move_on {day[0]} disagrees with categorizing on that day: the benchmark is void")
    sample = df.head(SAMPLE * 10)
    alone = categorize(rules, sample, AS_OF, explain=False, edges=True).select(key, *EDGE_COLUMNS)
    if not alone.equals(result.head(SAMPLE * 10).select(key, *EDGE_COLUMNS)):
        raise SystemExit("the edges of a sample computed alone differ from the whole run's: the benchmark is void")


HEAD = f"{'accounts':>11} {'(a) hand':>9} {'(c) expl':>9} {'(e) +edges':>11} {'c/a':>7} {'e/a':>7} {'edges/a':>8}"


def main(argv: list[str] | None = None) -> int:
    args = size_parser("python -m benchmarks.bench_edges", __doc__, repeat=3).parse_args(argv)
    sizes = sizes_of(args)
    rules = load_rules(BENCH_RULES)
    print(
        f"early warning: categorize with explanations and edges vs a hand-written pl.when/then chain, best of "
        f"{args.repeat}, seconds (as_of {AS_OF}, polars {pl.__version__}, {pl.thread_pool_size()} threads, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    print(HEAD)
    missed = []
    for n in sizes:
        df = accounts(rules, n)
        r = measure(rules, df, args.repeat)
        del df
        c, e = r["explain"] / r["hand"], r["edges"] / r["hand"]
        print(f"{r['rows']:>11,} {r['hand']:>9.3f} {r['explain']:>9.3f} {r['edges']:>11.3f} {c:>6.2f}x {e:>6.2f}x "
              f"{e - c:>7.2f}x  peak {peak_mib():,.0f} MiB", flush=True)  # fmt: skip
        print(f"{'':>11} accounts moving within 366 days: {r['moving']:.0%}; with an edge: {r['with_edge']:.0%}")
        for what, ratio, target in (("c/a", c, TARGET_EXPLAIN), ("e/a", e, TARGET_EDGES)):
            verdict = "PASS" if ratio <= target else "MISS"
            print(f"{'':>11} {verdict} {what} {ratio:.2f}x (target ≤ {target}x) at {n:,}")
            if verdict == "MISS":
                missed.append(f"{what} at {n:,}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("targets: with explanations within 3x, with explanations and edges within 6x of the hand-written chain — "
          + (f"MISSED ({', '.join(missed)})" if missed else "met"))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
