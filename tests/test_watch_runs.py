"""Watches in runs: an account about to move gets the watch's actions in the queue, superseded when the
watch stops holding, once per stay (as profile actions); the upcoming_moves view and the summary agree."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import duckdb
import polars as pl

from kare_rules.loader import load_rules
from kare_rules.run import RuleBundle, run_organization
from kare_rules.run.report import summary_lines
from kare_rules.warehouse import Warehouse

D1, D2, D3 = dt.date(2026, 9, 30), dt.date(2026, 10, 10), dt.date(2026, 10, 20)

RULES = """\
format: kare/v1
organization: watchful
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  last_order: {type: date, nullable: true}
  spend: {type: float}
derived:
  days_since_order: {days_since: last_order}
precedence: [keep, recapture]
profiles:
  keep:
    when: {all: [{days_since_order: {lte: 90}}, {spend: {gte: 1000}}]}
  recapture:
    when: {days_since_order: {gt: 90}}
watch:
  - id: lapsing
    from: keep
    to: recapture
    within_days: 30
    actions: [{id: save-call, title: Call before they lapse, due_in_days: 7, priority: high}]
  - id: spend-drop
    from: keep
    within: {spend: 10%}
    actions: [{id: spend-review, title: Review the drop in spend, due_in_days: 14}]
"""


def accounts(**rows: tuple[dt.date | None, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"account_id": a, "last_order": d, "spend": s} for a, (d, s) in rows.items()],
        schema={"account_id": pl.String, "last_order": pl.Date, "spend": pl.Float64},
    )


def queue(wh: Warehouse) -> dict[tuple[str, str], str]:
    q = wh.read("action_queue", "watchful")
    return {(r["account_id"], r["action_id"]): r["status"] for r in q.iter_rows(named=True)}


def test_watch_actions_open_while_the_watch_holds_once_per_stay(tmp_path):
    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    bundle = RuleBundle(load_rules(folder), RULES, ())
    wh = Warehouse(tmp_path / "wh.duckdb")

    # A: 77 days since the last order, so keep until day 90: recapture on 2026-10-14, in 14 days.
    # B: spend 1050 is 4.8 % above the keep threshold of 1000. C: recapture already.
    first = accounts(A=(dt.date(2026, 7, 15), 5000.0), B=(dt.date(2026, 9, 20), 1050.0), C=(dt.date(2026, 1, 1), 10.0))
    result = run_organization("watchful", D1, first, wh, bundle=bundle)
    cats = wh.read("account_categories", "watchful").sort("account_id")
    assert cats["next_category"].to_list() == ["recapture", "recapture", None]
    assert cats["next_move_on"].to_list() == [dt.date(2026, 10, 14), dt.date(2026, 12, 20), None]
    assert cats["watches"].to_list() == [["lapsing"], ["spend-drop"], []]
    assert cats.filter(pl.col("account_id") == "B").select("edge_column", "edge_threshold", "edge_change").row(0) == (
        "spend",
        1000.0,
        -50.0,
    )
    assert queue(wh) == {("A", "save-call"): "open", ("B", "spend-review"): "open"}
    assert result.moving_soon == 1
    assert any("upcoming  1 will move within 30 days" in line and "keep → recapture 1" in line
               for line in summary_lines(result))  # fmt: skip
    with duckdb.connect(str(wh.path), read_only=True) as con:
        view = con.execute("SELECT account_id, days_to_move FROM kare.upcoming_moves ORDER BY 1").fetchall()
    assert view == [("A", 14), ("B", 81)]

    # A orders again and B's spend recovers: both watches stop holding, their actions are superseded.
    run_organization("watchful", D2, accounts(A=(dt.date(2026, 10, 5), 5000.0), B=(dt.date(2026, 9, 20), 5000.0),
                                              C=(dt.date(2026, 1, 1), 10.0)), wh, bundle=bundle)  # fmt: skip
    assert queue(wh) == {("A", "save-call"): "superseded", ("B", "spend-review"): "superseded"}

    # B's spend slips again in the same stay in keep: like a profile action, not opened a second time.
    run_organization("watchful", D3, accounts(A=(dt.date(2026, 10, 5), 5000.0), B=(dt.date(2026, 9, 20), 1050.0),
                                              C=(dt.date(2026, 1, 1), 10.0)), wh, bundle=bundle)  # fmt: skip
    assert wh.read("account_categories", "watchful").filter(pl.col("account_id") == "B")["watches"].to_list() == [
        ["spend-drop"]
    ]
    assert queue(wh) == {("A", "save-call"): "superseded", ("B", "spend-review"): "superseded"}


def test_a_run_of_the_sql_engine_keeps_open_watch_actions_but_ends_them_with_the_stay(tmp_path):
    # The SQL engine computes no watches. Taken for "no watch holds", one such run superseded every open
    # watch action, and the next Polars run could not reopen them in the same stay.
    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    bundle = RuleBundle(load_rules(folder), RULES, ())
    wh = Warehouse(tmp_path / "wh.duckdb")
    a, b = (dt.date(2026, 7, 15), 5000.0), (dt.date(2026, 9, 20), 1050.0)
    run_organization("watchful", D1, accounts(A=a, B=b), wh, bundle=bundle)
    assert queue(wh) == {("A", "save-call"): "open", ("B", "spend-review"): "open"}
    # B drops out of keep (spend below 1000): its stay ends, and its watch action with it; A's stays open.
    run_organization("watchful", D2, accounts(A=a, B=(b[0], 900.0)), wh, bundle=bundle, engine="duckdb")
    assert queue(wh) == {("A", "save-call"): "open", ("B", "spend-review"): "superseded"}
    run_organization("watchful", D3 - dt.timedelta(days=8), accounts(A=a, B=(b[0], 900.0)), wh, bundle=bundle)
    assert queue(wh) == {("A", "save-call"): "open", ("B", "spend-review"): "superseded"}


def test_watches_and_trends_publish_the_same_tables_whatever_the_slice_count(tmp_path):
    """cloudnine 1.1.0 (a trend, two watches) over three monthly synthetic snapshots, 1 and 4 slices."""
    from kare_rules.run.engine import load_bundle
    from kare_rules.synth import evolve, synthesize
    from kare_rules.tables import TABLES, same_rows

    root = Path(__file__).resolve().parents[1]
    bundle = load_bundle(root / "rules", "cloudnine")
    days = [dt.date(2026, 8, 31), dt.date(2026, 9, 30), dt.date(2026, 10, 31)]
    snapshots = [synthesize(bundle.rules, 400, days[0], seed=5)]
    for month, (before, day) in enumerate(itertools.pairwise(days), start=1):
        snapshots.append(evolve(bundle.rules, snapshots[-1], before, day, seed=5, month=month))
    published = {}
    for slices in (1, 4):
        wh = Warehouse(tmp_path / f"s{slices}.duckdb")
        for day, accounts_ in zip(days, snapshots, strict=True):
            run_organization("cloudnine", day, accounts_, wh, bundle=bundle, slices=slices)
        published[slices] = {t: wh.read(t).drop("started_at", "finished_at", strict=False) for t in TABLES}
    for table in TABLES:
        assert same_rows(published[1][table], published[4][table]), table
    queue = published[1]["action_queue"]
    assert queue.filter(pl.col("source").str.starts_with("watch:")).height > 0  # the watches did open actions
    assert published[1]["account_values"]["as_of"].unique().sort().to_list() == days[1:]


def test_kare_explain_names_the_watches_that_hold_and_feeds_previous_values_to_the_next_move(tmp_path, capsys):
    from kare_rules.cli import main

    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    accounts(A=(dt.date(2026, 7, 15), 5000.0)).write_csv(tmp_path / "a.csv")
    code = main(["explain", "--rules", str(folder), "--input", str(tmp_path / "a.csv"), "--as-of", str(D1),
                 "--account", "A"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == "account A as of 2026-09-30 (watchful 1.0.0): keep"
    assert lines[2].startswith("next: keep → recapture on 2026-10-14, in 14 days, if no new order;")
    assert lines[3] == "watches: lapsing (their actions open in a run)"


def test_kare_explain_says_a_pinned_account_gets_no_watch_actions(tmp_path, capsys):
    # A run opens no watch actions for an account an override pins; explain used to say they open.
    from kare_rules.cli import main

    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    (folder / "overrides.yaml").write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: keep, reason: Renewal agreed, author: ana@example.com, expires: 2027-01-31}\n"
    )
    accounts(A=(dt.date(2026, 7, 15), 5000.0)).write_csv(tmp_path / "a.csv")
    code = main(["explain", "--rules", str(folder), "--input", str(tmp_path / "a.csv"), "--as-of", str(D1),
                 "--account", "A"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[1].startswith("override: a run publishes keep (pinned by ana@example.com until 2027-01-31")
    assert lines[4] == "watches: lapsing (a run opens none of their actions while the account is pinned)"


def test_a_rule_file_with_only_within_days_watches_needs_no_per_column_edges():
    from kare_rules.engine import categorize
    from kare_rules.loader import load_rules_text

    only_days = RULES.split("  - id: spend-drop")[0]
    rules = load_rules_text(only_days, "watchful.yaml")
    result = categorize(rules, accounts(A=(dt.date(2026, 7, 15), 5000.0), B=(dt.date(2026, 9, 20), 1050.0)), D1,
                        edges=True)  # fmt: skip
    assert result["watches"].to_list() == [["lapsing"], []]
    assert categorize(rules, accounts(), D1, edges=True)["watches"].to_list() == []


def test_an_overridden_account_moves_when_its_override_ends_and_has_no_edge_or_watch_actions(tmp_path):
    from kare_rules.overrides import Override

    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    pin = Override(account="A", category="keep", reason="contract renewal signed", author="rev@ops",
                   expires=dt.date(2027, 1, 1))  # fmt: skip
    bundle = RuleBundle(load_rules(folder), RULES, (pin,))
    wh = Warehouse(tmp_path / "wh.duckdb")
    run_organization("watchful", D1, accounts(A=(dt.date(2026, 7, 15), 5000.0), B=(dt.date(2026, 9, 20), 1050.0)), wh,
                     bundle=bundle)  # fmt: skip
    cats = wh.read("account_categories", "watchful").sort("account_id")
    assert cats["matched_rule"].to_list() == ["override", "profiles.keep"]
    # A is pinned to keep until 2027-01-01; the next day the rules decide again: 171 days since its
    # last order, recapture.
    assert cats["next_move_on"].to_list() == [dt.date(2027, 1, 2), dt.date(2026, 12, 20)]
    assert cats["next_category"].to_list() == ["recapture", "recapture"]
    assert cats["edge_column"].to_list() == [None, "spend"]
    assert cats["watches"].to_list() == [[], ["spend-drop"]]
    assert queue(wh) == {("B", "spend-review"): "open"}


def test_an_override_ending_within_the_horizon_is_the_next_move_unless_the_rules_agree(tmp_path):
    """Checked day by day against the rules: the category on the day before the move is the pinned one
    (the override holds through its expiry), and on the day of the move the rules give the next one."""
    from kare_rules.engine import categorize
    from kare_rules.overrides import Override, apply_overrides

    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    rules = load_rules(folder)
    pins = (
        # the rules say recapture the day after: that is the move
        Override(account="A", category="keep", reason="r", author="a@b", expires=dt.date(2027, 1, 1)),
        # the rules say keep too the day after: the move is theirs, day 91 after the last order
        Override(account="B", category="keep", reason="r", author="a@b", expires=dt.date(2026, 10, 5)),
        # ends after the horizon (366 days): no move
        Override(account="C", category="recapture", reason="r", author="a@b", expires=dt.date(2028, 1, 1)),
    )
    data = accounts(A=(dt.date(2026, 7, 15), 5000.0), B=(dt.date(2026, 9, 20), 1050.0), C=(dt.date(2026, 9, 1), 5000.0))
    wh = Warehouse(tmp_path / "wh.duckdb")
    run_organization("watchful", D1, data, wh, bundle=RuleBundle(rules, RULES, pins))
    cats = wh.read("account_categories", "watchful").sort("account_id")
    moves = dict(zip(cats["account_id"], zip(cats["next_category"], cats["next_move_on"], strict=True), strict=True))
    assert moves == {"A": ("recapture", dt.date(2027, 1, 2)), "B": ("recapture", dt.date(2026, 12, 20)),
                     "C": (None, None)}  # fmt: skip

    def category_on(account: str, day: dt.date) -> str:
        found = apply_overrides(categorize(rules, data, day, explain=True), rules.key, pins, day)
        return found.filter(pl.col("account_id") == account)["category"].item()

    for account, (then, day) in moves.items():
        if day is None:
            continue
        assert category_on(account, day - dt.timedelta(days=1)) == "keep"
        assert category_on(account, day) == then


def test_a_within_amount_holds_at_exactly_that_amount_despite_floating_point():
    from kare_rules.engine import categorize
    from kare_rules.loader import load_rules_text

    rules = load_rules_text(
        "format: kare/v1\norganization: thin\nversion: 1.0.0\ninputs:\n  id: {type: string, key: true}\n"
        "  margin: {type: float}\nprecedence: [keep]\nprofiles:\n  keep: {when: {margin: {gte: 0.05}}}\n"
        "watch:\n  - {id: thin, from: unassigned, to: keep, within: {margin: 0.03},\n"
        "     actions: [{id: look, title: Look, due_in_days: 7}]}\n",
        "thin",
    )
    # 0.05 - 0.02 is 0.030000000000000002 in floating point: at the limit, it holds; beyond it, not.
    frame = pl.DataFrame({"id": ["at", "inside", "beyond"], "margin": [0.02, 0.03, 0.0199]})
    result = categorize(rules, frame, "2026-11-01", edges=True)
    assert result["watches"].to_list() == [["thin"], ["thin"], []]


def test_a_duckdb_engine_run_says_its_upcoming_moves_were_not_computed_not_that_none_will_move(tmp_path):
    # The SQL engine computes no next moves: the summary said "upcoming  0 will move within 30 days"
    # for accounts 14 days from a move.
    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    bundle = RuleBundle(load_rules(folder), RULES, ())
    wh = Warehouse(tmp_path / "wh.duckdb")
    first = accounts(A=(dt.date(2026, 7, 15), 5000.0))  # keep until day 90: recapture in 14 days
    for unchanged in (False, True):  # the second is an unchanged re-run
        result = run_organization("watchful", D1, first, wh, bundle=bundle, engine="duckdb")
        assert result.unchanged is unchanged
        lines = summary_lines(result)
        upcoming = [line for line in lines if line.startswith("  upcoming  ")]
        assert upcoming == [
            "  upcoming  not computed: the duckdb engine gives categories only (no next moves, edges or watch "
            "actions); run with --engine polars for them"
        ]
    lines = summary_lines(run_organization("watchful", D2, first, wh, bundle=bundle))
    assert any(line.startswith("  upcoming  1 will move within 30 days") for line in lines)


def test_a_shorter_horizon_hides_later_moves_but_not_the_watches_a_run_would_open(tmp_path):
    # kare categorize --edges --horizon 10 dropped the watch 'lapsing' (within_days: 30) of an account
    # 14 days from its move, which a run opens: the horizon is what next_move_on shows, not what a watch sees.
    from kare_rules import categorize

    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    rules = load_rules(folder)
    first = accounts(A=(dt.date(2026, 7, 15), 5000.0), C=(dt.date(2026, 1, 1), 10.0))
    full = categorize(rules, first, D1, edges=True)
    short = categorize(rules, first, D1, edges=True, horizon=10)
    assert full["next_move_on"].to_list() == [dt.date(2026, 10, 14), None]
    assert short["next_move_on"].to_list() == [None, None]
    assert short["next_category"].to_list() == [None, None]
    assert short["watches"].to_list() == full["watches"].to_list() == [["lapsing"], []]
    assert categorize(rules, first, D1, edges=True, horizon=14)["next_move_on"].to_list() == [
        dt.date(2026, 10, 14),
        None,
    ]


def test_a_renamed_watch_is_one_rename_to_the_reviewer_who_is_told_the_run_reopens_its_done_actions(tmp_path):
    # kare diff called a renamed watch "the same watch" and said nothing more, but the queue keys a watch's
    # actions by the watch id: the next run opened its action again for an account whose action was done.
    from kare_rules.diff import rule_changes

    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    wh = Warehouse(tmp_path / "wh.duckdb")
    today = accounts(A=(dt.date(2026, 7, 15), 5000.0))  # recapture on 2026-10-14: lapsing holds on D1 and D2
    run_organization("watchful", D1, today, wh, bundle=RuleBundle(load_rules(folder), RULES, ()))
    with duckdb.connect(str(wh.path)) as con:
        con.execute("UPDATE kare.action_queue SET status = 'done', closed_on = DATE '2026-10-01'")

    renamed = RULES.replace("id: lapsing", "id: lapse-soon").replace("version: 1.0.0", "version: 1.1.0")
    other = tmp_path / "after" / "watchful"
    other.mkdir(parents=True)
    (other / "kare.yaml").write_text(renamed)
    texts = [c.text for c in rule_changes(load_rules(folder), load_rules(other))]
    assert texts == [
        "watch lapsing renamed to lapse-soon (same watch: accounts in keep about to move to recapture: next move "
        "within 30 days); the next run supersedes the watch's open actions and opens them again under "
        "lapse-soon, even where marked done"
    ]
    run_organization("watchful", D2, today, wh, bundle=RuleBundle(load_rules(other), renamed, ()))
    q = wh.read("action_queue", "watchful").sort("created_on")
    assert q.select("source", "status").rows() == [("watch:lapsing", "done"), ("watch:lapse-soon", "open")]


def test_a_duckdb_engine_run_publishes_watches_and_overlaps_as_unknown_not_as_none_held(tmp_path):
    # The SQL engine computes neither: it published empty lists, which a dashboard reads as "no watch
    # holds" and "no other category held" (docs/bi.md: the early-warning columns are then null).
    folder = tmp_path / "rules" / "watchful"
    folder.mkdir(parents=True)
    (folder / "kare.yaml").write_text(RULES)
    bundle = RuleBundle(load_rules(folder), RULES, ())
    wh = Warehouse(tmp_path / "wh.duckdb")
    first = accounts(A=(dt.date(2026, 7, 15), 5000.0))  # keep, 14 days from recapture: the watch 'lapsing' holds
    run_organization("watchful", D1, first, wh, bundle=bundle, engine="duckdb")
    with duckdb.connect(str(wh.path), read_only=True) as con:
        rows = con.sql('SELECT category, watches, "overlaps", next_move_on FROM kare.account_categories').fetchall()
    assert rows == [("keep", None, None, None)]
    run_organization("watchful", D2, first, wh, bundle=bundle)
    with duckdb.connect(str(wh.path), read_only=True) as con:
        rows = con.sql('SELECT category, watches, "overlaps" FROM kare.account_categories').fetchall()
    assert rows == [("keep", ["lapsing"], [])]
