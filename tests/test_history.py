"""History and actions: every change cause, held (quarantined) accounts, the action queue's promises,
overrides, and a property test over random snapshot sequences."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from kare_rules.errors import RuleFileError
from kare_rules.loader import load_rules, load_rules_text
from kare_rules.overrides import Override, apply_overrides, load_overrides
from kare_rules.run import RuleBundle, RunResult, Thresholds, run_organization
from kare_rules.run.history import history_problems, positions
from kare_rules.tables import FAR_FUTURE, same_rows
from kare_rules.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
RULES_TEXT = (ROOT / "rules" / "cloudnine" / "kare.yaml").read_text()
RULES = load_rules(ROOT / "rules" / "cloudnine")
# The same organization after a rule change: 'strategic' needs twice the ARR.
RULES_V2_TEXT = RULES_TEXT.replace("version: 1.1.0", "version: 1.2.0").replace(
    "{arr: {gte: 100000}}", "{arr: {gte: 300000}}"
)
RULES_V2 = load_rules_text(RULES_V2_TEXT, "cloudnine@v2")
TEXTS = {RULES.digest: RULES_TEXT, RULES_V2.digest: RULES_V2_TEXT}
D1, D2, D3, D4 = dt.date(2026, 8, 31), dt.date(2026, 9, 30), dt.date(2026, 10, 31), dt.date(2026, 11, 30)


def account(account_id: str, category: str, as_of: dt.date = D1, **changes) -> dict:
    """One cloudnine input row that the v1 rules put in `category`."""
    row = {
        "account_id": account_id,
        "account_owner": f"owner-of-{account_id}",
        "plan": "team",
        "segment": "smb",
        "is_customer": True,
        "arr": 5000.0,
        "seats": 10,
        "seats_used": 1,
        "nps": 10,
        "employees": 50,
        "churned_on": None,
        "payment_overdue_days": 0,
    }
    row.update(
        {
            "expand": {"arr": 250000.0, "segment": "mid_market", "seats_used": 9, "nps": 50},
            "keep": {},
            "exit": {"payment_overdue_days": 120},
            "recapture": {"is_customer": False, "churned_on": as_of - dt.timedelta(days=100), "nps": None},
            "attain": {"is_customer": False, "segment": "mid_market", "employees": 800},
            "unassigned": {"is_customer": False},
        }[category]
    )
    row.update(changes)
    return row


def frame(rows: list[dict]) -> pl.DataFrame:
    schema = {
        "account_id": pl.String,
        "account_owner": pl.String,
        "plan": pl.String,
        "segment": pl.String,
        "is_customer": pl.Boolean,
        "arr": pl.Float64,
        "seats": pl.Int64,
        "seats_used": pl.Int64,
        "nps": pl.Int64,
        "employees": pl.Int64,
        "churned_on": pl.Date,
        "payment_overdue_days": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


@dataclass
class Published:
    """A run published to a scratch warehouse, with that warehouse's tables as the run left them."""

    wh: Warehouse
    result: RunResult

    run_id = property(lambda self: self.result.run["run_id"])
    unchanged = property(lambda self: self.result.unchanged)
    run = property(lambda self: self.result.run)
    category_transitions = property(lambda self: self.result.transitions)
    account_categories = property(lambda self: self.wh.read("account_categories", "cloudnine"))
    category_history = property(lambda self: self.wh.read("category_history", "cloudnine"))
    action_queue = property(lambda self: self.wh.read("action_queue", "cloudnine"))
    quarantine = property(
        lambda self: self.wh.read("quarantine", "cloudnine").filter(pl.col("as_of") == self.result.run["as_of"])
    )


def next_state(out: Published, _rules) -> Published:
    """The warehouse the next run builds on."""
    return out


def run(rules, rows, as_of, previous: Published | None = None, *, overrides=(), max_quarantine_share=0.5):
    """Publish one run with the engine; these frames are tiny, so one bad row is a large share."""
    raw = rows if isinstance(rows, pl.DataFrame) else frame(rows)
    wh = previous.wh if previous else Warehouse(Path(tempfile.mkdtemp(prefix="kare-history-")) / "w.duckdb")
    limits = Thresholds(max_quarantine_share=max_quarantine_share, max_removed_share=1.0)
    bundle = RuleBundle(rules, TEXTS[rules.digest], tuple(overrides))
    return Published(wh, run_organization("cloudnine", as_of, raw, wh, bundle=bundle, thresholds=limits))


def current(out: Published, account_id: str) -> dict:
    rows = out.category_history.filter(pl.col("is_current") & (pl.col("account_id") == account_id))
    assert rows.height == 1, f"{account_id} has {rows.height} current rows"
    return rows.row(0, named=True)


def actions_of(out: Published, account_id: str, status: str | None = None) -> pl.DataFrame:
    q = out.action_queue.filter(pl.col("account_id") == account_id)
    return q.filter(pl.col("status") == status) if status else q


# ---- change causes -----------------------------------------------------------------------------


def test_first_run_opens_one_new_row_per_account():
    out = run(RULES, [account("A", "keep"), account("B", "expand")], D1)
    h = out.category_history
    assert h.height == 2
    assert h["change_cause"].to_list() == ["new", "new"]
    assert h["previous_category"].to_list() == [None, None]
    assert h["valid_to"].to_list() == [FAR_FUTURE, FAR_FUTURE]
    assert h["category"].to_list() == ["keep", "expand"]


def test_data_change_closes_the_old_row_and_opens_one_with_cause_data():
    one = run(RULES, [account("A", "keep")], D1)
    two = run(RULES, [account("A", "exit")], D2, next_state(one, RULES))
    rows = two.category_history.sort("valid_from")
    assert rows.select("category", "valid_from", "valid_to", "is_current", "change_cause").rows() == [
        ("keep", D1, D2, False, "new"),
        ("exit", D2, FAR_FUTURE, True, "data"),
    ]
    assert current(two, "A")["previous_category"] == "keep"


def test_unchanged_account_gets_no_new_row():
    one = run(RULES, [account("A", "keep")], D1)
    two = run(RULES, [account("A", "keep", arr=6000.0)], D2, next_state(one, RULES))
    assert two.category_history.height == 1
    assert current(two, "A")["valid_from"] == D1


def test_rule_change_alone_is_cause_rules():
    one = run(RULES, [account("A", "expand"), account("B", "keep")], D1)
    two = run(RULES_V2, [account("A", "expand"), account("B", "keep")], D2, next_state(one, RULES))
    a = current(two, "A")
    assert (a["category"], a["previous_category"], a["change_cause"]) == ("keep", "expand", "rules")
    assert a["rules_version"] == "1.2.0"
    assert current(two, "B")["valid_from"] == D1  # the rule change did not move B


def test_a_move_the_old_rules_make_just_as_well_is_data_though_the_rules_changed():
    one = run(RULES, [account("A", "expand")], D1)
    # A stops paying: the old rules would also have moved it to recapture, so the rule change made no
    # difference to this move (it said 'both', as if the rules had a part in it).
    moved = account("A", "recapture", as_of=D2, arr=250000.0, segment="mid_market")
    two = run(RULES_V2, [moved], D2, next_state(one, RULES))
    row = current(two, "A")
    assert (row["previous_category"], row["category"], row["change_cause"]) == ("expand", "recapture", "data")


def test_rule_change_and_data_change_that_old_rules_move_elsewhere_is_both():
    one = run(RULES, [account("A", "keep", arr=150000.0)], D1)  # strategic under v1 but not healthy: keep
    # Overdue and now healthy: the old rules make it expand (strategic at 150k), the new ones exit (v2 wants
    # 300k for 'strategic', and an overdue account that is not strategic exits): both had a part.
    moved = {**account("A", "keep", as_of=D2, arr=150000.0), "nps": 50, "seats_used": 9, "payment_overdue_days": 120}
    two = run(RULES_V2, [moved], D2, next_state(one, RULES))
    row = current(two, "A")
    assert (row["previous_category"], row["category"], row["change_cause"]) == ("keep", "exit", "both")


def test_data_change_after_an_earlier_rule_change_is_data_not_both():
    # A keeps its category across the rule change, so its open row still carries the v1 digest;
    # a later data change under unchanged v2 rules is a data change.
    one = run(RULES, [account("A", "keep")], D1)
    two = run(RULES_V2, [account("A", "keep")], D2, next_state(one, RULES))
    assert current(two, "A")["rules_version"] == "1.1.0"
    three = run(RULES_V2, [account("A", "exit")], D3, next_state(two, RULES_V2))
    assert current(three, "A")["change_cause"] == "data"


def test_account_absent_from_input_is_removed_and_coming_back_is_data():
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    two = run(RULES, [account("B", "keep")], D2, next_state(one, RULES))
    gone = current(two, "A")
    assert (gone["category"], gone["previous_category"], gone["change_cause"]) == (None, "keep", "removed")
    assert "A" not in two.account_categories["account_id"].to_list()
    moves = dict(
        ((r[0], r[1]), r[2]) for r in two.category_transitions.select("from_category", "to_category", "accounts").rows()
    )
    assert moves == {("keep", "removed"): 1, ("keep", "keep"): 1}
    three = run(RULES, [account("A", "expand"), account("B", "keep")], D3, next_state(two, RULES))
    back = current(three, "A")
    assert (back["category"], back["previous_category"], back["change_cause"]) == ("expand", None, "data")
    assert history_problems(three.category_history) == []
    assert three.category_history.filter(pl.col("account_id") == "A").height == 3


def test_override_change_is_cause_override_and_expiry_is_inclusive():
    pin = (Override("A", "expand", "strategic logo", "ana@cloudnine.example", D2),)
    one = run(RULES, [account("A", "keep")], D1)
    two = run(RULES, [account("A", "keep")], D2, next_state(one, RULES), overrides=pin)
    a = current(two, "A")
    assert (a["category"], a["matched_rule"], a["change_cause"]) == ("expand", "override", "override")
    reason = two.account_categories["reason"][0]
    assert "ana@cloudnine.example" in reason and "strategic logo" in reason and "rules said: keep" in reason
    # The day after expiry the rules apply again, and the return is an override change too.
    three = run(RULES, [account("A", "keep")], D3, next_state(two, RULES), overrides=pin)
    a = current(three, "A")
    assert (a["category"], a["change_cause"]) == ("keep", "override")


def test_apply_overrides_expires_inclusive():
    cats = pl.DataFrame(
        {
            "account_id": ["A", "B"],
            "category": ["keep", "keep"],
            "matched_rule": ["profiles.keep"] * 2,
            "reason": ["r", "r"],
        }
    )
    pin = (Override("A", "exit", "bad debt", "bo", D2),)
    assert apply_overrides(cats, "account_id", pin, D2)["category"].to_list() == ["exit", "keep"]
    assert apply_overrides(cats, "account_id", pin, D2 + dt.timedelta(days=1))["category"].to_list() == ["keep", "keep"]


def test_overrides_file_with_an_unknown_category_is_located(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: expand, reason: big logo, author: ana, expires: 2026-12-31}\n"
        "  - {account: B, category: platinum, reason: vip, author: ana, expires: 2026-12-31}\n"
        "  - {account: A, category: keep, reason: again, author: bo, expires: 2026-12-31}\n"
    )
    with pytest.raises(RuleFileError) as info:
        load_overrides(path, RULES)
    text = str(info.value)
    assert "overrides.yaml:4:" in text  # the unknown category, on its own line
    assert "platinum" in text or "exit" in text
    assert "overridden twice" in text and "overrides.yaml:5:" in text


def test_an_override_to_a_category_the_rules_do_not_define_says_which_they_do(tmp_path):
    # The message named the problem but not what to write instead.
    path = tmp_path / "overrides.yaml"
    path.write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: attain, reason: new logo, author: ana, expires: 2026-12-31}\n"
    )
    two = load_rules_text(
        "format: kare/v1\norganization: duo\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  paying: {type: boolean}\nprofiles:\n  keep: {when: {paying: true}}\n  recapture: {when: {paying: false}}\n",
        "duo",
    )
    with pytest.raises(RuleFileError) as info:
        load_overrides(path, two)
    assert str(info.value).endswith(
        "overrides.yaml:3:28: category 'attain' is not defined in the rules; pin one they define: keep, recapture, "
        "unassigned"
    )


def test_overrides_file_a_too_short_reason_says_how_long_not_empty(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: keep, reason: x, author: ana, expires: 2026-12-31}\n"
        "  - {account: B, category: keep, reason: '', author: ana, expires: 2026-12-31}\n"
    )
    with pytest.raises(RuleFileError) as info:
        load_overrides(path, RULES)
    assert [p.message for p in info.value.problems] == [
        "overrides.0.reason needs at least 3 characters, not 'x'",
        "overrides.1.reason must not be empty",
    ]


def test_overrides_file_a_date_not_on_the_calendar_comes_out_with_the_other_problems(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: A, category: keep, reason: agreed, author: ana, expires: 2026-02-30}\n"
        "  - {account: B, category: expnd, reason: agreed, author: ana, expires: 2026-12-31}\n"
    )
    with pytest.raises(RuleFileError) as info:
        load_overrides(path, RULES)
    assert [(p.line, p.message.split(";")[0]) for p in info.value.problems] == [
        (3, "'2026-02-30' is not a calendar date"),
        (4, "overrides.1.category: 'expnd' is not allowed"),
    ]


def test_overrides_file_loads_and_a_missing_file_means_none(tmp_path):
    path = tmp_path / "overrides.yaml"
    assert load_overrides(path, RULES) == ()
    path.write_text(
        "format: kare-overrides/v1\noverrides:\n"
        "  - {account: 42, category: exit, reason: fraud case, author: ana, expires: 2026-12-31}\n"
    )
    assert load_overrides(path, RULES) == (Override("42", "exit", "fraud case", "ana", dt.date(2026, 12, 31)),)


# ---- quarantined accounts are held -------------------------------------------------------------


def test_quarantined_account_keeps_its_category_and_open_actions_and_is_not_removed():
    one = run(RULES, [account("A", "expand"), account("B", "keep")], D1)
    bad = account("A", "expand", nps=500)  # above the maximum: quarantined
    two = run(RULES, [bad, account("B", "keep")], D2, next_state(one, RULES))
    assert two.quarantine["account_id"].to_list() == ["A"]
    a = current(two, "A")
    assert (a["category"], a["valid_from"], a["change_cause"]) == ("expand", D1, "new")
    held = two.account_categories.filter(pl.col("account_id") == "A").row(0, named=True)
    assert (held["category"], held["run_id"], held["as_of"]) == ("expand", one.run_id, D1)
    assert sorted(actions_of(two, "A", "open")["action_id"]) == ["exec-qbr", "upsell-plan"]
    assert actions_of(two, "A").height == 2  # nothing superseded, nothing duplicated
    assert two.run["quarantined_rows"] == 1 and two.run["input_rows"] == 2
    # The account's counts do not vanish from the transitions either: it stayed.
    assert ("expand", "expand") in set(two.category_transitions.select("from_category", "to_category").rows())
    assert history_problems(two.category_history) == []


# ---- action queue ------------------------------------------------------------------------------


def test_actions_are_opened_once_with_due_on_and_owner_from_the_named_column():
    one = run(RULES, [account("A", "expand"), account("B", "attain")], D1)
    a = actions_of(one, "A").sort("action_id")
    assert a.select("action_id", "owner", "created_on", "due_on", "status", "priority").rows() == [
        ("exec-qbr", "owner-of-A", D1, D1 + dt.timedelta(days=30), "open", "high"),
        ("upsell-plan", "owner-of-A", D1, D1 + dt.timedelta(days=45), "open", "medium"),
    ]
    b = actions_of(one, "B")
    assert b.select("action_id", "owner").rows() == [("outreach", None)]  # no owner column named
    two = run(RULES, [account("A", "expand"), account("B", "attain")], D2, next_state(one, RULES))
    assert same_rows(two.action_queue, one.action_queue)  # still open, not duplicated, not re-dated
    assert two.run["actions_opened"] == 0


def test_leaving_a_category_supersedes_its_open_actions_and_fires_transition_actions():
    one = run(RULES, [account("A", "keep")], D1)
    two = run(RULES, [account("A", "recapture", as_of=D2)], D2, next_state(one, RULES))
    q = actions_of(two, "A").sort("action_id")
    assert q.select("action_id", "source", "status", "closed_on", "due_on").rows() == [
        ("churn-review", "transition:keep>recapture", "open", None, D2 + dt.timedelta(days=7)),
        ("renewal-check", "category", "superseded", D2, D1 + dt.timedelta(days=60)),
        ("win-back", "category", "open", None, D2 + dt.timedelta(days=21)),
    ]
    assert two.run["actions_closed"] == 1 and two.run["actions_opened"] == 2
    # Staying in recapture keeps both open; moving on supersedes the transition action too.
    three = run(RULES, [account("A", "recapture", as_of=D2)], D3, next_state(two, RULES))
    assert actions_of(three, "A", "open").height == 2
    four = run(RULES, [account("A", "keep")], D4, next_state(three, RULES))
    assert sorted(actions_of(four, "A", "open")["action_id"]) == ["renewal-check"]
    assert actions_of(four, "A", "superseded").height == 3


def test_at_most_one_open_action_per_account_and_action_id_over_back_and_forth_moves():
    prev, out = None, None
    for day, cat in zip([D1, D2, D3, D4], ["keep", "expand", "keep", "expand"], strict=True):
        out = run(RULES, [account("A", cat)], day, prev)
        prev = next_state(out, RULES)
        dup = out.action_queue.filter(pl.col("status") == "open").group_by("account_id", "action_id").len()
        assert dup["len"].max() == 1
    assert sorted(actions_of(out, "A", "open")["action_id"]) == ["exec-qbr", "upsell-plan"]


def test_removed_account_actions_are_superseded():
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    two = run(RULES, [account("B", "keep")], D2, next_state(one, RULES))
    assert actions_of(two, "A", "open").height == 0
    assert actions_of(two, "A", "superseded")["closed_on"].to_list() == [D2]


def test_rerunning_the_same_date_changes_nothing():
    one = run(RULES, [account("A", "keep"), account("B", "expand")], D1)
    rows = [account("A", "recapture", as_of=D2), account("C", "attain"), account("B", "expand", nps=500)]
    two = run(RULES, rows, D2, next_state(one, RULES))
    again = run(RULES, rows, D2, next_state(two, RULES))
    assert again.unchanged and again.run_id == two.run_id
    for table in ("account_categories", "category_history", "category_transitions", "action_queue", "quarantine"):
        assert same_rows(getattr(again, table), getattr(two, table)), table


def test_rerunning_a_date_after_a_rules_change_keeps_its_rules_causes():
    rows = [account("A", "expand", arr=400000.0), account("B", "keep"), account("C", "expand", arr=150000.0)]
    one = run(RULES, rows, D1)
    two = run(RULES_V2, rows, D2, one)
    first = two.category_history
    # C's ARR (150k) no longer makes it strategic under v2: a change the rules made, not the data.
    changed = first.filter(pl.col("valid_from") == D2)
    assert changed.select("account_id", "previous_category", "category", "change_cause").rows() == [
        ("C", "expand", "keep", "rules")
    ]
    again = run(RULES_V2, rows, D2, two)
    assert same_rows(again.category_history, first)
    assert again.wh.last_run("cloudnine")["status"] == "unchanged"


def test_rerunning_a_date_with_other_data_replaces_that_dates_changes():
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    run(RULES, [account("A", "exit"), account("B", "keep")], D2, one)
    fixed = run(RULES, [account("A", "keep"), account("B", "exit")], D2, one)
    h = fixed.category_history.sort("account_id", "valid_from")
    assert h.select("account_id", "category", "valid_from", "is_current").rows() == [
        ("A", "keep", D1, True),
        ("B", "keep", D1, False),
        ("B", "exit", D2, True),
    ]
    assert sorted(actions_of(fixed, "A", "open")["action_id"]) == ["renewal-check"]
    assert history_problems(h) == []


def test_history_problems_finds_each_broken_invariant():
    far = FAR_FUTURE

    def rows(*spans):
        return pl.DataFrame(
            [{"account_id": a, "valid_from": f, "valid_to": t, "is_current": t == far} for a, f, t in spans],
            schema={"account_id": pl.String, "valid_from": pl.Date, "valid_to": pl.Date, "is_current": pl.Boolean},
        )

    ok = rows(("A", D1, D2), ("A", D2, D3), ("A", D3, far), ("B", D2, far))
    assert history_problems(ok) == []
    gap = "accounts have intervals that do not end where the next begins"
    assert history_problems(rows(("A", D1, D2), ("A", D3, far))) == [f"1 {gap} (e.g. A)"]
    # Overlap: two rows end on the same day; and two rows that start on the same day.
    assert history_problems(rows(("A", D1, D3), ("A", D2, D3), ("A", D3, far))) == [f"1 {gap} (e.g. A)"]
    assert history_problems(rows(("A", D1, D2), ("A", D1, D2), ("A", D2, far))) == [f"1 {gap} (e.g. A)"]
    assert history_problems(rows(("A", D1, far), ("A", D2, far), ("B", D1, D2))) == [
        "2 accounts do not have exactly one current row (e.g. A)",
        f"1 {gap} (e.g. B)",
    ]
    assert history_problems(rows(("A", D2, D1), ("A", D1, far))) == ["1 intervals end before they begin (e.g. A)"]


# ---- positions: today's accounts found among the current rows ------------------------------------


def test_positions_finds_each_id_with_or_without_a_join():
    among = pl.Series(["a", "b", "c", "d"])
    assert positions(pl.Series(["a", "b", "c", "d"]), among).to_list() == [0, 1, 2, 3]  # aligned: no join
    assert positions(pl.Series(["d", "x", "b"]), among).to_list() == [3, None, 1]
    assert positions(pl.Series(["a", "b", "c"]), among).to_list() == [0, 1, 2]  # a prefix is not aligned
    assert positions(pl.Series([], dtype=pl.String), among).to_list() == []


def test_the_order_of_the_input_rows_changes_nothing_that_is_published():
    """The same accounts in key order (the current rows' order, no join) and reversed (a join)."""
    first = [account("A", "keep"), account("B", "expand"), account("C", "attain"), account("D", "keep")]
    second = [account("A", "keep"), account("B", "keep"), account("C", "attain", is_customer=True),
              account("D", "exit")]  # fmt: skip
    ordered = run(RULES, second, D2, run(RULES, first, D1))
    shuffled = run(RULES, list(reversed(second)), D2, run(RULES, first, D1))
    for table in ("account_categories", "category_history", "action_queue"):
        a, b = getattr(ordered, table), getattr(shuffled, table)  # the run id hashes the rows in order
        assert same_rows(a.drop("run_id", strict=False), b.drop("run_id", strict=False)), table
    moved = ordered.category_history.filter(pl.col("valid_from") == D2).sort("account_id")
    assert moved.select("account_id", "previous_category", "category").rows() == [
        ("B", "expand", "keep"),
        ("C", "attain", "keep"),
        ("D", "keep", "exit"),
    ]


# ---- re-runs, held accounts and foreign tables (found in review) ---------------------------------


def test_a_table_named_like_a_python_variable_in_the_database_does_not_change_what_a_run_publishes():
    import duckdb

    one = run(RULES, [account("A", "keep")], D1)
    with duckdb.connect(str(one.wh.path)) as con:  # a notebook or dbt leaves tables in the default schema
        con.execute("CREATE TABLE frame AS SELECT 'x' AS org")
        con.execute("CREATE TABLE kare_rows_0 AS SELECT 'x' AS org")
    two = run(RULES, [account("A", "expand"), account("B", "keep")], D2, one)
    h = two.category_history.sort("account_id", "valid_from")
    assert h.select("org", "account_id", "category", "valid_from").rows() == [
        ("cloudnine", "A", "keep", D1),
        ("cloudnine", "A", "expand", D2),
        ("cloudnine", "B", "keep", D2),
    ]
    assert two.wh.read("runs")["org"].to_list() == ["cloudnine", "cloudnine"]


@pytest.mark.parametrize("org", ["./cloudnine", "Cloudnine", "cloud/nine", "", "x" * 70])
def test_the_engine_refuses_an_organization_name_that_is_not_a_folder_name(tmp_path, org):
    from kare_rules.errors import UsageError

    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(UsageError, match="not an organization name"):
        run_organization(org, D1, frame([account("A", "keep")]), wh, rules_dir=ROOT / "rules")
    assert not wh.path.exists()  # nothing was opened, let alone published


def test_the_engine_refuses_rules_of_another_organization(tmp_path):
    from kare_rules.errors import UsageError

    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(UsageError, match="those of cloudnine"):
        run_organization("forge", D1, frame([account("A", "keep")]), wh, bundle=RuleBundle(RULES, RULES_TEXT, ()))
    assert not wh.path.exists()


def test_a_rerun_compares_the_category_mix_with_the_run_before_not_the_one_it_replaces():
    keep = [account(i, "keep") for i in "ABCD"]
    one = run(RULES, keep, D1)
    run(RULES, [account(i, "exit") for i in "ABCD"], D2, one)  # a bad extract: every account exits
    fixed = run(RULES, keep, D2, one)  # the corrected extract, published again for D2
    shift = next(c for c in fixed.result.checks if c.name == "category_mix_shift")
    assert shift.passed and shift.metadata["largest_share_change"] == 0.0


def test_a_rerun_keeps_the_actions_of_the_date_that_people_marked_done():
    import duckdb

    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    two = run(RULES, [account("A", "expand"), account("B", "keep")], D2, one)
    with duckdb.connect(str(two.wh.path)) as con:  # someone did the review two days later
        con.execute("UPDATE kare.action_queue SET status = 'done', closed_on = DATE '2026-10-02' "
                    "WHERE action_id = 'exec-qbr'")  # fmt: skip
    fixed = run(RULES, [account("A", "expand"), account("B", "keep", arr=5100.0)], D2, two)  # a corrected extract
    a = actions_of(fixed, "A").sort("action_id")
    assert a.select("action_id", "status", "created_on", "closed_on").rows() == [
        ("exec-qbr", "done", D2, dt.date(2026, 10, 2)),
        ("renewal-check", "superseded", D1, D2),
        ("upsell-plan", "open", D2, None),
    ]
    assert fixed.action_queue["action_key"].is_duplicated().sum() == 0


INT_KEY_RULES = """\
format: kare/v1
organization: numbered
version: 1.0.0
inputs:
  id: {type: integer, key: true}
  arr: {type: float, min: 0}
precedence: [keep]
profiles:
  keep:
    when: {arr: {gt: 0}}
"""


def test_a_quarantined_row_holds_its_account_whatever_way_its_integer_key_is_written(tmp_path):
    rules = load_rules_text(INT_KEY_RULES, "numbered")
    bundle = RuleBundle(rules, INT_KEY_RULES, ())
    wh = Warehouse(tmp_path / "w.duckdb")
    limits = Thresholds(max_quarantine_share=1.0)
    run_organization("numbered", D1, pl.DataFrame({"id": [1, 2, 3], "arr": [5.0, 6.0, 7.0]}), wh, bundle=bundle)
    # A float column (a CSV export with gaps): 1.0 is account 1, and its row fails (arr below the minimum).
    later = pl.DataFrame({"id": [1.0, 2.0, 3.0], "arr": [-1.0, 6.0, 7.0]})
    result = run_organization("numbered", D2, later, wh, bundle=bundle, thresholds=limits)
    assert wh.read("quarantine")["account_id"].to_list() == ["1"]  # joins with account_categories
    history = wh.read("category_history")
    assert history.filter(pl.col("account_id") == "1").select("category", "is_current").rows() == [("keep", True)]
    assert result.transitions.filter(pl.col("to_category") == "removed").height == 0


def test_a_rerun_that_quarantines_accounts_holds_them_as_the_history_has_them_before_the_date():
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    two = run(RULES, [account("A", "expand"), account("B", "keep"), account("N", "keep")], D2, one)
    # The date again, with A's and N's rows failing validation (a tighter rule, a corrected extract).
    rows = [account("A", "expand", segment="bogus"), account("B", "keep"), account("N", "keep", segment="bogus")]
    fixed = run(RULES, rows, D2, two, max_quarantine_share=1.0)
    h = fixed.category_history.sort("account_id", "valid_from")
    assert h.select("account_id", "category", "valid_from", "is_current").rows() == [
        ("A", "keep", D1, True),
        ("B", "keep", D1, True),
    ]  # N, new in the replaced run, is not known: its only rows are quarantined
    cats = fixed.account_categories.sort("account_id")
    assert cats.select("account_id", "category", "as_of", "run_id").rows() == [
        ("A", "keep", D1, one.run_id),  # as the history has it, not the replaced run's expand
        ("B", "keep", D2, fixed.run_id),
    ]
    assert cats["reason"][0].startswith("keep: kept while its input rows are quarantined")
    assert sorted(fixed.action_queue.filter(pl.col("status") == "open").select("account_id", "action_id").rows()) == [
        ("A", "renewal-check"), ("B", "renewal-check"),
    ]  # fmt: skip
    assert history_problems(fixed.category_history) == []


def test_a_rerun_holds_a_quarantined_account_that_the_replaced_run_had_removed():
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    two = run(RULES, [account("B", "keep")], D2, one)  # the wrong extract: A missing, so removed
    # The date again with the right extract, in which A's row fails validation: A is held, not removed.
    fixed = run(RULES, [account("A", "keep", segment="bogus"), account("B", "keep")], D2, two, max_quarantine_share=1.0)
    h = fixed.category_history.sort("account_id", "valid_from")
    assert h.select("account_id", "category", "valid_from", "is_current").rows() == [
        ("A", "keep", D1, True),
        ("B", "keep", D1, True),
    ]
    cats = fixed.account_categories.sort("account_id")
    assert cats.select("account_id", "category", "as_of").rows() == [("A", "keep", D1), ("B", "keep", D2)]
    assert fixed.category_transitions.filter(pl.col("to_category") == "removed").height == 0
    assert sorted(fixed.action_queue.filter(pl.col("status") == "open")["account_id"].to_list()) == ["A", "B"]
    assert history_problems(fixed.category_history) == []


def test_a_held_account_gets_a_renamed_category_action_in_place_of_the_old_one_not_both():
    renamed_text = RULES_TEXT.replace("version: 1.1.0", "version: 1.2.0").replace(
        "id: renewal-check", "id: renewal-plan"
    )
    renamed = load_rules_text(renamed_text, "cloudnine@renamed")
    TEXTS[renamed.digest] = renamed_text
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    # The rule change renames keep's action; A's row is quarantined that day, so A is held in keep.
    two = run(renamed, [account("A", "keep", segment="bogus"), account("B", "keep")], D2, one, max_quarantine_share=1.0)
    open_now = two.action_queue.filter(pl.col("status") == "open").select("account_id", "action_id").sort("account_id")
    assert open_now.rows() == [("A", "renewal-plan"), ("B", "renewal-plan")]
    assert actions_of(two, "A", "superseded")["action_id"].to_list() == ["renewal-check"]


def test_a_held_account_s_renamed_category_action_keeps_its_owner():
    renamed_text = RULES_TEXT.replace("version: 1.1.0", "version: 1.2.0").replace(
        "id: renewal-check", "id: renewal-plan"
    )
    renamed = load_rules_text(renamed_text, "cloudnine@renamed")
    TEXTS[renamed.digest] = renamed_text
    one = run(RULES, [account("A", "keep"), account("B", "keep")], D1)
    # A's only row is quarantined (segment), so A is held in keep; its owner column is as valid as ever.
    two = run(renamed, [account("A", "keep", segment="bogus"), account("B", "keep")], D2, one, max_quarantine_share=1.0)
    opened = two.action_queue.filter(pl.col("status") == "open").select("account_id", "action_id", "owner")
    assert sorted(opened.rows()) == [("A", "renewal-plan", "owner-of-A"), ("B", "renewal-plan", "owner-of-B")]


def test_an_account_held_across_a_rule_change_is_judged_against_the_rules_that_last_categorized_it():
    c = account("C", "expand", arr=150000.0)  # expand under v1; v2 wants 300k for 'strategic': keep
    others = [account(f"K{i}", "keep") for i in range(5)]
    one = run(RULES, [c, *others], D1)
    two = run(RULES_V2, [{**c, "segment": "bogus"}, *others], D2, one)  # C quarantined: held in expand
    three = run(RULES_V2, [c, *others], D3, two)  # C's data exactly as on D1: only the rules moved it
    row = current(three, "C")
    assert (row["previous_category"], row["category"], row["change_cause"]) == ("expand", "keep", "rules")
    # Its data changing as well (nps too low for 'healthy' under either version): the rules that last
    # categorized it would make the same move, so it is the data's.
    one = run(RULES, [c, *others], D1)
    two = run(RULES_V2, [{**c, "segment": "bogus"}, *others], D2, one)
    three = run(RULES_V2, [{**c, "nps": 5}, *others], D3, two)
    assert current(three, "C")["change_cause"] == "data"


def test_a_rerun_holding_an_account_held_the_run_before_too_keeps_the_run_that_last_categorized_it():
    c = account("C", "expand", arr=150000.0)  # expand under v1; keep under v2
    others = [account(f"K{i}", "keep") for i in range(5)]
    one = run(RULES, [c, *others], D1)
    two = run(RULES_V2, [{**c, "segment": "bogus"}, *others], D2, one)  # held: last categorized by run one
    three = run(RULES_V2, [c, *others], D3, two)
    # D3 again, C's row quarantined once more: its row is rebuilt, and run two never categorized C.
    again = run(RULES_V2, [{**c, "segment": "bogus"}, *others], D3, three)
    row = again.account_categories.filter(pl.col("account_id") == "C").row(0, named=True)
    assert (row["category"], row["as_of"], row["run_id"]) == ("expand", D1, one.run_id)
    assert (row["rules_version"], row["rules_digest"]) == (RULES.version, RULES.digest)
    assert row["reason"] == (
        f"expand: kept while its input rows are quarantined (its explanation of {D1} was replaced when {D3} was "
        "run again)"
    )
    # So the next run still measures C's move against the rules that last categorized it: only they changed.
    four = run(RULES_V2, [c, *others], D4, again)
    row = current(four, "C")
    assert (row["previous_category"], row["category"], row["change_cause"]) == ("expand", "keep", "rules")


def test_an_unquoted_account_yaml_reads_as_another_value_is_refused_and_an_integer_key_is_normalized(tmp_path):
    path = tmp_path / "overrides.yaml"
    items = ["00123", "1_000", "0x1F", "yes", "42", "'007'"]
    path.write_text("format: kare-overrides/v1\noverrides:\n" + "".join(
        f"  - {{account: {a}, category: keep, reason: agreed, author: ana, expires: 2026-12-31}}\n" for a in items
    ))  # fmt: skip
    with pytest.raises(RuleFileError) as info:
        load_overrides(path, RULES)  # the key of cloudnine is text
    assert [(p.line, p.column, p.message.split(":")[0]) for p in info.value.problems] == [
        (3, 15, "account 00123 is read by YAML as 83, not as the text '00123' the key 'account_id' holds"),
        (4, 15, "account 1_000 is read by YAML as 1000, not as the text '1_000' the key 'account_id' holds"),
        (5, 15, "account 0x1F is read by YAML as 31, not as the text '0x1F' the key 'account_id' holds"),
        (6, 15, "overrides.3.account must be string or integer, not true/false"),
    ]  # 42 and '007' are the accounts '42' and '007'
    numbered = load_rules_text(INT_KEY_RULES, "numbered")
    pin = "  - {account: '05', category: keep, reason: agreed, author: ana, expires: 2026-12-31}\n"
    path.write_text("format: kare-overrides/v1\noverrides:\n" + pin)
    assert [o.account for o in load_overrides(path, numbered)] == ["5"]


def test_an_override_of_an_integer_key_out_of_its_range_or_fractional_is_one_located_problem(tmp_path):
    # No account of a 64-bit key is 99999999999999999999: the pin was accepted and could never apply.
    path = tmp_path / "overrides.yaml"
    items = ["99999999999999999999", "5.5", "'9223372036854775807'"]
    path.write_text("format: kare-overrides/v1\noverrides:\n" + "".join(
        f"  - {{account: {a}, category: keep, reason: agreed, author: ana, expires: 2026-12-31}}\n" for a in items
    ))  # fmt: skip
    with pytest.raises(RuleFileError) as info:
        load_overrides(path, load_rules_text(INT_KEY_RULES, "numbered"))
    assert [(p.line, p.column, p.message) for p in info.value.problems] == [
        (3, 15, "account 99999999999999999999 is out of the range of the 64-bit integer key 'id'; "
                "write the account's number"),
        (4, 15, "overrides.1.account must be string or integer, not a number"),
    ]  # fmt: skip
