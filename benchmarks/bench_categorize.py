"""The rule engine against a hand-written pl.when/then chain of the same rules, timed in the same process.

    python -m benchmarks.bench_categorize [--sizes 1000000,10000000] [--repeat 5] [--no-bundled]
    (or KARE_BENCH_SIZES=N,N; default 1,000,000 and 10,000,000)

The accounts are synthesized from the rules (kare_rules.synth) and conformed and materialized in
memory first, so only categorization is timed. Per size, best of `--repeat` runs, interleaved so that
load from other work on the machine falls on all three alike:
- (a) hand: a pl.when/then chain written by hand below, giving the key and `category`;
- (b) categorize(rules, df, as_of, explain=False): key, `category`, `matched_rule`;
- (c) categorize(rules, df, as_of, explain=True): also `reason` and `overlaps`.
(a), (b) and (c) must give every account the same category (joined on the key), and every reason of
(c) must be about its own row's category, before anything is printed; a disagreement voids the run.
Targets: b/a ≤ 1.3x, c/a ≤ 3x. The two bundled organizations' rule files are timed at 1M for
reference, each against its own hand-written chain.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from benchmarks.baseline import bench_chain
from kare_rules import model as m
from kare_rules.compile_polars import NO_MATCH
from kare_rules.engine import categorize, conform
from kare_rules.loader import load_rules
from kare_rules.synth import synthesize

ROOT = Path(__file__).resolve().parent.parent
BENCH_RULES = Path(__file__).resolve().parent / "rules" / "bench"
AS_OF = dt.date(2026, 11, 1)
DEFAULT_SIZES = "1000000,10000000"
REFERENCE_SIZE = 1_000_000
TARGET_CATEGORIES, TARGET_EXPLAIN = 1.3, 3.0

Chain = Callable[[dt.date], pl.Expr]


# ---- the hand-written chains: what someone would write without kare-rules -----------------------


def cloudnine_chain(as_of: dt.date) -> pl.Expr:
    """rules/cloudnine/kare.yaml by hand."""
    paying = pl.col("is_customer")
    strategic = (pl.col("arr") >= 100_000) | (pl.col("segment") == "enterprise")
    utilization = pl.col("seats_used") / pl.when(pl.col("seats") != 0).then(pl.col("seats"))
    healthy = (pl.col("nps") >= 30) & (utilization >= 0.8)
    since_churn = (pl.lit(as_of) - pl.col("churned_on")).dt.total_days()
    detractor = (pl.col("nps") < 0).fill_null(False)
    ideal = pl.col("segment").is_in(["mid_market", "enterprise"]) & (pl.col("employees") >= 200)
    return (
        pl.when(paying & (pl.col("payment_overdue_days") > 90) & ~strategic.fill_null(False))
        .then(pl.lit("exit"))
        .when(paying & strategic & healthy)
        .then(pl.lit("expand"))
        .when(paying)
        .then(pl.lit("keep"))
        .when(~paying & since_churn.is_between(0, 365) & ~detractor)
        .then(pl.lit("recapture"))
        .when(~paying & pl.col("churned_on").is_null() & ideal)
        .then(pl.lit("attain"))
        .otherwise(pl.lit("unassigned"))
        .alias("category")
    )


def forge_chain(as_of: dt.date) -> pl.Expr:
    """rules/forge-industrial/kare.yaml by hand."""
    since_last = (pl.lit(as_of) - pl.col("last_order_date")).dt.total_days()
    since_first = (pl.lit(as_of) - pl.col("first_order_date")).dt.total_days()
    active = since_last <= 180
    high_value = pl.col("revenue_12m") >= 500_000
    thin_margin = pl.col("gross_margin_pct") < 0.08
    return (
        pl.when(active & (pl.col("credit_hold") | thin_margin) & ~high_value)
        .then(pl.lit("exit"))
        .when(active & (pl.col("orders_12m") >= 12) & high_value & (since_first >= 365))
        .then(pl.lit("expand"))
        .when(active)
        .then(pl.lit("keep"))
        .when(since_last.is_between(181, 1095) & ~pl.col("credit_hold"))
        .then(pl.lit("recapture"))
        .when(pl.col("last_order_date").is_null() & (pl.col("prospect_score") >= 70))
        .then(pl.lit("attain"))
        .otherwise(pl.lit("unassigned"))
        .alias("category")
    )


# ---- measuring ----------------------------------------------------------------------------------


def accounts(rules: m.RuleSet, n: int) -> pl.DataFrame:
    """`n` synthetic accounts, conformed to the rules' types and materialized (not timed)."""
    return conform(synthesize(rules, n, AS_OF, seed=11), rules).collect()


def disagreements(base: pl.DataFrame, other: pl.DataFrame, key: str) -> int:
    """Accounts whose category differs, or that are in one result only."""
    joined = base.select(key, "category").join(
        other.select(key, pl.col("category").alias("other")), on=key, how="full", coalesce=True
    )
    return joined.filter(pl.col("category").ne_missing(pl.col("other"))).height


def misexplained(result: pl.DataFrame) -> int:
    """Rows whose reason is not about their own category: a reason must start with 'category: ', or be
    the no-match text for an unassigned account. Guards against reasons attached to the wrong rows."""
    own = pl.col("reason").str.starts_with(pl.col("category") + pl.lit(": "))
    unassigned = (pl.col("category") == m.UNASSIGNED) & (pl.col("reason") == NO_MATCH)
    return result.filter(~(own | unassigned).fill_null(False) | pl.col("reason").is_null()).height


def measure(rules: m.RuleSet, chain: Chain, df: pl.DataFrame, repeat: int) -> dict:
    """Best-of-`repeat` seconds for (a) hand, (b) categories, (c) explain; raises SystemExit when
    they disagree on any account."""
    key = rules.key
    runs: dict[str, Callable[[], pl.DataFrame]] = {
        "hand": lambda: df.lazy().select(pl.col(key), chain(AS_OF)).collect(),
        "categories": lambda: categorize(rules, df, AS_OF, explain=False),
        "explain": lambda: categorize(rules, df, AS_OF, explain=True),
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
        wrong = disagreements(hand, result, key)
        if wrong:
            raise SystemExit(
                f"{rules.organization}: categorize ({name}) and the hand-written chain disagree on {wrong:,} of "
                f"{df.height:,} accounts: the benchmark is void (were the rules changed without the chain?)"
            )
    wrong = misexplained(results["explain"])
    if wrong:
        raise SystemExit(
            f"{rules.organization}: categorize (explain) gave {wrong:,} of {df.height:,} accounts a reason that is "
            "not about their category: the benchmark is void"
        )
    shares = hand["category"].value_counts(normalize=True).sort("proportion", descending=True)
    mix = ", ".join(f"{c} {p:.0%}" for c, p in shares.iter_rows())
    return {**best, "rows": df.height, "mix": mix}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def row(label: str, r: dict) -> str:
    b, c = r["categories"] / r["hand"], r["explain"] / r["hand"]
    return (
        f"{label:<18} {r['rows']:>11,} {r['hand']:>9.3f} {r['categories']:>10.3f} {r['explain']:>9.3f} "
        f"{b:>6.2f}x {c:>6.2f}x"
    )


HEAD = f"{'rules':<18} {'accounts':>11} {'(a) hand':>9} {'(b) categ':>10} {'(c) expl':>9} {'b/a':>7} {'c/a':>7}"


def size_parser(prog: str, doc: str, repeat: int) -> argparse.ArgumentParser:
    """The options of the in-process benchmarks: `--sizes` (default KARE_BENCH_SIZES) and `--repeat`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.strip().splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("KARE_BENCH_SIZES", DEFAULT_SIZES),
                        help="comma-separated account counts (KARE_BENCH_SIZES)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=repeat, help="runs of each measurement; the best is kept")
    return parser


def sizes_of(args: argparse.Namespace) -> list[int]:
    return [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = size_parser("python -m benchmarks.bench_categorize", __doc__, repeat=5)
    parser.add_argument("--no-bundled", action="store_true", help="skip the bundled organizations' rule files")
    args = parser.parse_args(argv)
    sizes = sizes_of(args)

    rules = load_rules(BENCH_RULES)
    print(
        f"rule engine: categorize vs a hand-written pl.when/then chain, best of {args.repeat}, seconds "
        f"(as_of {AS_OF}, polars {pl.__version__}, {pl.thread_pool_size()} threads)"
    )
    print(HEAD)
    missed = []
    for n in sizes:
        df = accounts(rules, n)
        r = measure(rules, bench_chain, df, args.repeat)
        del df
        print(row("bench (12 preds)", r), f"  peak {peak_mib():,.0f} MiB", flush=True)
        print(f"{'':<18} categories: {r['mix']}")
        b, c = r["categories"] / r["hand"], r["explain"] / r["hand"]
        for what, ratio, target in (("b/a", b, TARGET_CATEGORIES), ("c/a", c, TARGET_EXPLAIN)):
            verdict = "PASS" if ratio <= target else "MISS"
            print(f"{'':<18} {verdict} {what} {ratio:.2f}x (target ≤ {target}x) at {n:,}")
            if verdict == "MISS":
                missed.append(f"{what} at {n:,}")
    if not args.no_bundled:
        n = min(REFERENCE_SIZE, max(sizes))
        print(f"for reference, the bundled organizations at {n:,} accounts (no targets):")
        for org, chain in (("cloudnine", cloudnine_chain), ("forge-industrial", forge_chain)):
            org_rules = load_rules(ROOT / "rules" / org)
            r = measure(org_rules, chain, accounts(org_rules, n), args.repeat)
            print(row(org, r), flush=True)
    print("targets: categories within 1.3x, with explanations within 3x of the hand-written chain — "
          + (f"MISSED ({', '.join(missed)})" if missed else "met"))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
