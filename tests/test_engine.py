"""The run engine against the full-history reference: random sequences of snapshots (accounts joining,
leaving, changing, quarantined; rule changes; overrides; re-runs of a date) publish the same tables
whatever the slice count, and the same as recomputing each run from the whole history."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kare_rules.errors import UsageError
from kare_rules.overrides import Override
from kare_rules.run import RuleBundle, RunFailed, RunInterrupted, Thresholds, run_organization
from kare_rules.run.history import history_problems
from kare_rules.tables import TABLES, empty, same_rows
from kare_rules.validation import validate_accounts
from kare_rules.warehouse import Warehouse
from tests.reference.runner import PreviousState, compute_run
from tests.test_history import D1, RULES, RULES_TEXT, RULES_V2, TEXTS, account, frame

ORG = "cloudnine"
PER_ACCOUNT = ("account_categories", "category_history", "action_queue")
PER_DAY = ("category_transitions", "quarantine")
CATS = ["exit", "expand", "keep", "recapture", "attain", "unassigned"]
IDS = [f"A{i}" for i in range(9)]
STATE = st.sampled_from([*CATS, "absent", "quarantined"])
STEP = st.fixed_dictionaries({
    "states": st.lists(STATE, min_size=len(IDS), max_size=len(IDS)),
    "rules": st.sampled_from(["v1", "v2"]),
    "override": st.booleans(),
    "rerun": st.booleans(),  # run this date again, with the next step's data
})  # fmt: skip
PIN = (Override(account="A1", category="exit", reason="fraud review", author="rev@ops", expires=dt.date(2027, 1, 1)),)
NO_LIMITS = Thresholds(max_quarantine_share=1.0, max_removed_share=1.0, allow_empty_input=True)


def snapshot(states: list[str], day: dt.date) -> pl.DataFrame:
    rows = []
    for a, s in zip(IDS, states, strict=True):
        if s == "absent":
            continue
        # A negative ARR fails validation: the account's row is quarantined, the account held.
        rows.append(account(a, "keep", as_of=day, arr=-1.0) if s == "quarantined" else account(a, s, as_of=day))
    return frame(rows)


class Reference:
    """The warehouse as the full-history engine left it: every table in memory, rebuilt each run."""

    def __init__(self):
        self.tables = {t: empty(t) for t in PER_ACCOUNT}
        self.days = {t: {} for t in PER_DAY}
        self.runs: list[tuple[dt.date, str, object]] = []  # (as_of, run_id, rules) of each published run
        self.values: dict[dt.date, pl.DataFrame] = {}  # each run's valid accounts' values, for trends
        self.categories: dict[dt.date, pl.DataFrame] = {}  # account_categories as each date's last run left them

    def run(self, rules, raw, day, overrides, run_id):
        before = [r for r in self.runs if r[0] < day]
        last = self.runs[-1] if self.runs else None
        previous = PreviousState(
            categories=self.tables["account_categories"], history=self.tables["category_history"],
            actions=self.tables["action_queue"], last_as_of=last[0] if last else None,
            last_run_id=last[1] if last else None, last_rules_digest=before[-1][2].digest if before else None,
            previous_rules=before[-1][2] if before else None,
            values=self.values.get(before[-1][0]) if before else None, before=before[-1] if before else None,
            versions={r.digest: r for _, _, r in self.runs},
            categories_before=self.categories[before[-1][0]] if before else None,
        )  # fmt: skip
        out = compute_run(rules, raw, day, previous, overrides=overrides, run_id=run_id, max_quarantine_share=1.0)
        valid = validate_accounts(rules, raw).valid
        self.values[day] = valid.select(pl.col(rules.key).cast(pl.String).alias("account_id"),
                                        *[c.name for c in rules.inputs if c.type in ("integer", "float")])  # fmt: skip
        self.tables = {t: getattr(out, t) for t in PER_ACCOUNT}
        self.categories[day] = out.account_categories
        for t in PER_DAY:
            self.days[t][day] = getattr(out, t)
        self.runs.append((day, run_id, rules))

    def table(self, name: str) -> pl.DataFrame:
        if name in PER_ACCOUNT:
            return self.tables[name]
        return pl.concat([empty(name), *self.days[name].values()])


def publish(wh, rules, raw, day, overrides, slices):
    bundle = RuleBundle(rules, TEXTS[rules.digest], overrides)
    return run_organization(ORG, day, raw, wh, bundle=bundle, thresholds=NO_LIMITS, slices=slices)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(STEP, min_size=1, max_size=5))
# A0 held across a rule change, then held again by a re-run of the next date: its row keeps the first run's.
@example([{"states": s, "rules": r, "override": False, "rerun": again} for s, r, again in [
    (["expand"] * 9, "v1", False), (["quarantined"] + ["expand"] * 8, "v2", False),
    (["expand"] * 9, "v2", True), (["quarantined"] + ["expand"] * 8, "v2", False), (["expand"] * 9, "v2", False),
]])  # fmt: skip
def test_any_slice_count_publishes_what_the_full_history_reference_computes(tmp_path_factory, steps):
    folder = tmp_path_factory.mktemp("engine")
    whole, sliced = Warehouse(folder / "whole.duckdb"), Warehouse(folder / "sliced.duckdb")
    reference = Reference()
    day = D1
    for i, step in enumerate(steps):
        rules = RULES if step["rules"] == "v1" else RULES_V2
        overrides = PIN if step["override"] else ()
        raw = snapshot(step["states"], day)
        result = publish(whole, rules, raw, day, overrides, slices=1)
        publish(sliced, rules, raw, day, overrides, slices=3)
        reference.run(rules, raw, day, overrides, result.run["run_id"])
        for table in (*PER_ACCOUNT, *PER_DAY):
            expected = reference.table(table)
            assert same_rows(whole.read(table, ORG), expected), (i, table, "one slice")
            assert same_rows(sliced.read(table, ORG), expected), (i, table, "three slices")
        assert history_problems(whole.read("category_history", ORG)) == []
        if not step["rerun"]:
            day += dt.timedelta(days=30)


@pytest.fixture
def two_runs(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    first = frame([account(a, c) for a, c in zip(IDS, ["keep", "expand", "keep", "attain", "exit", "keep",
                                                       "recapture", "keep", "keep"], strict=True)])  # fmt: skip
    publish(wh, RULES, first, D1, (), 1)
    return wh, frame([account(a, c, as_of=D1) for a, c in zip(IDS, ["recapture", "expand", "keep", "keep", "exit",
                                                                    "keep", "recapture", "keep", "expand"],
                                                                   strict=True)])  # fmt: skip


def snapshot_of(wh) -> dict[str, pl.DataFrame]:
    return {t: wh.read(t) for t in TABLES}


@pytest.mark.parametrize("slices", [1, 3])
@pytest.mark.parametrize(
    "step", ["category_history", "action_queue", "account_categories", "quarantine", "category_transitions", "runs",
             "commit"],
)  # fmt: skip
def test_a_failure_at_any_publish_step_leaves_every_table_as_it_was(two_runs, step, slices):
    wh, second = two_runs
    before = snapshot_of(wh)

    def fail(at: str) -> None:
        if at == step:
            raise RuntimeError(f"injected failure at {at}")

    with pytest.raises(RunFailed, match=f"injected failure at {step}"):
        run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()),
                         slices=slices, fail_at=fail)  # fmt: skip
    after = snapshot_of(wh)
    for table in TABLES:
        if table == "runs":  # the failure is logged; nothing else is
            failed = after[table].filter(pl.col("status") == "failed")
            assert failed.height == 1 and f"injected failure at {step}" in failed["message"][0]
            assert same_rows(after[table].filter(pl.col("status") != "failed"), before[table])
        else:
            assert same_rows(after[table], before[table]), table


@pytest.mark.parametrize(
    "step", ["rewind", "category_history", "action_queue", "account_categories", "quarantine", "runs", "commit"]
)
def test_a_failure_while_a_rerun_replaces_a_date_leaves_every_table_as_it_was(two_runs, step):
    wh, second = two_runs
    day, bundle = D1 + dt.timedelta(days=30), RuleBundle(RULES, RULES_TEXT, ())
    run_organization(ORG, day, second, wh, bundle=bundle)
    before = snapshot_of(wh)
    corrected = second.with_columns(pl.lit(0).alias("payment_overdue_days"))  # other data for the same date

    def fail(at: str) -> None:
        if at == step:
            raise RuntimeError(f"injected failure at {at}")

    with pytest.raises(RunFailed, match=f"injected failure at {step}"):
        run_organization(ORG, day, corrected, wh, bundle=bundle, fail_at=fail)
    after = snapshot_of(wh)
    assert same_rows(after["runs"].filter(pl.col("status") != "failed"), before["runs"])
    for table in TABLES:
        if table != "runs":
            assert same_rows(after[table], before[table]), table


def test_a_failed_run_is_logged_with_its_run_id_input_rows_and_rules_version(two_runs):
    wh, second = two_runs
    bad = second.with_columns(pl.lit(-1.0).alias("arr"))  # every row fails validation
    with pytest.raises(RunFailed, match="failed validation"):
        run_organization(ORG, D1 + dt.timedelta(days=30), bad, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()))
    failed = wh.read("runs", ORG).filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["run_id"].startswith("cloudnine-") and failed["input_rows"] == bad.height
    assert failed["rules_version"] == RULES.version and "failed validation" in failed["message"]


def test_an_empty_input_is_refused_unless_allowed(two_runs):
    wh, second = two_runs
    before = snapshot_of(wh)
    bundle = RuleBundle(RULES, RULES_TEXT, ())
    later = D1 + dt.timedelta(days=30)
    with pytest.raises(RunFailed, match=r"the input has no rows.*--allow-empty-input"):
        run_organization(ORG, later, second.head(0), wh, bundle=bundle)
    assert same_rows(wh.read("category_history"), before["category_history"])
    allowed = run_organization(ORG, later, second.head(0), wh, bundle=bundle,
                               thresholds=Thresholds(allow_empty_input=True, max_removed_share=1.0))  # fmt: skip
    assert wh.read("account_categories", ORG).height == 0 and allowed.run["status"] == "published"


def test_removing_more_than_the_allowed_share_of_accounts_publishes_nothing(two_runs):
    wh, second = two_runs
    before = snapshot_of(wh)
    bundle = RuleBundle(RULES, RULES_TEXT, ())
    later = D1 + dt.timedelta(days=30)
    with pytest.raises(RunFailed, match=r"remove 6 of 9 current accounts \(66.7%: .*--max-removed-share"):
        run_organization(ORG, later, second.head(3), wh, bundle=bundle)
    assert same_rows(wh.read("action_queue"), before["action_queue"])
    ok = run_organization(ORG, later, second.head(3), wh, bundle=bundle, thresholds=Thresholds(max_removed_share=0.7))
    assert ok.run["status"] == "published"
    assert wh.read("category_history", ORG).filter(pl.col("change_cause") == "removed").height == 6


def test_a_guard_names_its_limit_as_given_and_a_share_that_reads_as_above_it():
    """--max-removed-share 0.055 refusing 5.8% said 'above the limit of 6%', --max-quarantine-share 0.005
    'the limit of 0%', and 50.003% over 50% read '50.0%': the operator could not tell what went wrong."""
    from kare_rules.run.quality import RunBlocked, quarantine_check, removed_check

    with pytest.raises(RunBlocked, match=r"\(5\.8%: .*above the limit of 5\.5%;"):
        removed_check(34_799, 600_000, 565_201, Thresholds(max_removed_share=0.055))
    with pytest.raises(RunBlocked, match=r"\(50\.003%: .*above the limit of 50%;"):
        removed_check(300_018, 600_000, 299_982, Thresholds())
    quarantine = pl.DataFrame({"row_number": [1] * 4_802, "account_id": ["A1"] * 4_802, "reasons": [["bad"]] * 4_802})
    with pytest.raises(RunBlocked, match=r"^4,802 of 600,000 input rows \(0\.8%\) .*above the limit of 0\.5%;"):
        quarantine_check(quarantine, 600_000, 0.005)
    # and, as the removed-share refusal does, a value to pass that lets this input through
    with pytest.raises(RunBlocked, match=r"--max-quarantine-share 0\.01, to publish the 595,198 valid rows"):
        quarantine_check(quarantine, 600_000, 0.005)
    thirty = quarantine.head(1).select(pl.all().repeat_by(3_040).explode())
    with pytest.raises(RunBlocked, match=r"--max-quarantine-share 0\.31, to publish the 6,960 valid rows"):
        quarantine_check(thirty, 10_000, 0.2)


def test_a_quarantine_refusal_with_no_valid_row_does_not_offer_a_limit_that_publishes_nothing():
    """Every row of an export with US dates failed; the refusal said to pass --max-quarantine-share 1 'to
    publish the 0 valid rows', and with one valid row 'the 1 valid rows'."""
    from kare_rules.run.quality import RunBlocked, quarantine_check

    quarantine = pl.DataFrame({"row_number": [1, 2], "account_id": ["A1", "A2"], "reasons": [["bad"]] * 2})
    with pytest.raises(RunBlocked, match=r"Fix the source: no row is valid") as refused:
        quarantine_check(quarantine, 2, 0.2)
    assert "--max-quarantine-share" not in str(refused.value)
    with pytest.raises(RunBlocked, match=r"--max-quarantine-share 0\.67, to publish the 1 valid row and keep"):
        quarantine_check(quarantine, 3, 0.2)


def test_the_engine_is_part_of_a_runs_identity(two_runs):
    wh, second = two_runs
    bundle = RuleBundle(RULES, RULES_TEXT, ())
    later = D1 + dt.timedelta(days=30)
    polars_run = run_organization(ORG, later, second, wh, bundle=bundle)
    duck = run_organization(ORG, later, second, wh, bundle=bundle, engine="duckdb")
    assert duck.run["run_id"] != polars_run.run["run_id"] and not duck.unchanged
    assert wh.read("account_categories", ORG)["reason"].null_count() == second.height  # the SQL engine gives none
    again = run_organization(ORG, later, second, wh, bundle=bundle, engine="duckdb")
    assert again.unchanged and again.run["status"] == "unchanged"


def test_a_run_reads_only_current_state_never_the_closed_history(two_runs, monkeypatch):
    """Statements a run sends never select closed rows: every read of category_history asks for
    current rows, and every read of action_queue asks for open ones or for named keys."""
    import kare_rules.warehouse.duckdb as wd

    wh, second = two_runs
    seen: list[str] = []
    real = wd._fetch

    def spy(con, query, params):
        seen.append(query)
        return real(con, query, params)

    monkeypatch.setattr(wd, "_fetch", spy)
    run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()))
    history_reads = [q for q in seen if '"category_history"' in q]
    action_reads = [q for q in seen if '"action_queue"' in q]
    assert history_reads and all("is_current" in q for q in history_reads)
    assert action_reads and all("status = 'open'" in q or "kare_ids_" in q for q in action_reads)


def test_rules_are_read_once_per_run(tmp_path, monkeypatch):
    """An edit to the rule file during a run cannot mix versions: the engine reads it once."""
    import shutil

    from kare_rules.run import load_bundle

    shutil.copytree(Path(__file__).resolve().parents[1] / "rules" / ORG, tmp_path / ORG)
    bundle = load_bundle(tmp_path, ORG)
    (tmp_path / ORG / "kare.yaml").write_text(RULES_TEXT.replace("version: 1.1.0", "version: 9.9.9"))
    wh = Warehouse(tmp_path / "w.duckdb")
    result = run_organization(ORG, D1, frame([account("A", "keep")]), wh, bundle=bundle)
    assert result.run["rules_version"] == "1.1.0"
    assert replace(bundle).rules.version == "1.1.0"


def test_slices_follow_the_input_size_and_the_memory_budget():
    from kare_rules.run.slicing import MIN_SLICE_ROWS, WORKING_SET_FACTOR, parse_size, slice_count

    gib = 2**30
    assert slice_count(MIN_SLICE_ROWS, 10 * gib, gib) == 1  # small organizations are never sliced
    assert slice_count(10_000_000, gib // 2, 64 * gib) == 1  # room enough
    tight = slice_count(10_000_000, gib, 3 * gib)
    assert tight == -(-int(gib * WORKING_SET_FACTOR) // (2 * gib))  # the working set over the room left
    assert slice_count(10_000_000, gib, gib) > tight  # a smaller budget, more slices
    assert slice_count(200_000, 100 * gib, gib) == 200_000 // MIN_SLICE_ROWS  # never slices below the minimum
    assert [parse_size(s) for s in ("4GiB", "512MB", "2g", "1073741824")] == [4 * gib, 512 * 10**6, 2 * 10**9, gib]
    for bad in ("", "lots", "4 parsecs", "1k"):
        with pytest.raises(UsageError, match=r"memory size|too small"):
            parse_size(bad)


def test_a_memory_budget_no_slicing_can_keep_is_a_note_with_the_peak(tmp_path, monkeypatch):
    # --memory-budget 300MiB on 2.5M accounts: 50 slices (the most), a peak of 1.0 GB, and nothing said.
    from kare_rules.run import slicing

    monkeypatch.setattr(slicing, "MIN_SLICE_ROWS", 2)  # as many slices as a large input gets at most
    accounts = frame([account(f"A{i}", "keep") for i in range(6)])
    bundle = RuleBundle(RULES, RULES_TEXT, ())
    tight = run_organization(ORG, D1, accounts, Warehouse(tmp_path / "a.duckdb"), bundle=bundle, memory_budget=2**26)
    [note] = tight.notes
    assert note.startswith("memory peaked at ") and "above the budget of 64 MiB" in note
    assert note.endswith("so no slicing keeps to it; give --memory-budget at least the peak")
    ample = run_organization(ORG, D1, accounts, Warehouse(tmp_path / "b.duckdb"), bundle=bundle, memory_budget=2**40)
    assert ample.notes == []
    assert slicing.budget_note(2**40) is None  # predicted short, but the peak stayed within: nothing to say


def test_ctrl_c_inside_a_duckdb_statement_is_an_interruption_not_an_aborted_transaction(two_runs):
    # Ctrl-C (or kare run's SIGTERM) while DuckDB inserted: 'TransactionException: Current transaction is
    # aborted' or 'RuntimeError: Query interrupted', exit 1, logged as that, instead of interrupted.
    wh, second = two_runs
    rows = pl.DataFrame({"a": [1]}).to_arrow()
    with pytest.raises(KeyboardInterrupt), wh.transaction() as session, session._registered(rows, "kare_rows"):
        with pytest.raises(Exception, match="boom"):
            session.con.execute("SELECT error('boom')")  # the statement Ctrl-C stopped: the transaction aborts
        raise KeyboardInterrupt

    def stopped(step: str) -> None:
        if step == "runs":
            raise RuntimeError("Query interrupted")  # what DuckDB raises when Ctrl-C stops its statement

    with pytest.raises(RunInterrupted, match="interrupted; nothing was published"):
        run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()),
                         fail_at=stopped)  # fmt: skip


def test_ctrl_c_once_the_run_is_committed_does_not_say_nothing_was_published(two_runs, monkeypatch):
    # It came while the file closed or the lock was freed: the run said 'nothing was published' and logged a
    # failed run beside the published one.
    import contextlib

    import kare_rules.run.engine as engine

    wh, second = two_runs
    real = engine.warehouse_lock

    @contextlib.contextmanager
    def lock_freed_under_ctrl_c(*args, **kwargs):
        with real(*args, **kwargs):
            yield
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "warehouse_lock", lock_freed_under_ctrl_c)
    result = run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()))
    assert result.run["status"] == "published"
    assert result.stopped
    assert snapshot_of(wh)["runs"]["status"].to_list() == ["published", "published"]


@pytest.mark.parametrize("slices", [1, 2])
def test_an_override_of_an_account_not_in_the_input_is_a_note(tmp_path, slices, monkeypatch):
    # A misspelt id pinned nothing, silently, every run until it expired.
    from kare_rules.run import slicing

    monkeypatch.setattr(slicing, "MIN_SLICE_ROWS", 1)
    pins = tuple(Override(a, "expand", "logo", "ana", D1 + dt.timedelta(days=days))
                 for a, days in (("A", 9), ("Q", 9), ("Acme Corp ", 9), ("Z", -1)))  # fmt: skip
    accounts = frame([account("A", "keep"), account("B", "keep"), account("Q", "keep", nps=500)])  # Q: quarantined
    bundle = RuleBundle(RULES, RULES_TEXT, pins)
    result = run_organization(ORG, D1, accounts, Warehouse(tmp_path / "w.duckdb"), bundle=bundle, slices=slices,
                              thresholds=Thresholds(max_quarantine_share=0.5))  # fmt: skip
    assert result.notes == [
        "overrides.yaml pins 1 account(s) not in the input, which it therefore left alone: 'Acme Corp '; check "
        "those ids against the input's account_id"
    ]  # not Z, whose override has expired
    assert Warehouse(tmp_path / "w.duckdb").read("account_categories").filter(pl.col("account_id") == "A")[
        "matched_rule"
    ].to_list() == ["override"]


def test_a_run_reports_progress_by_step_and_slice(two_runs):
    wh, second = two_runs
    seen: list[tuple[str, int, int]] = []
    run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()), slices=2,
                     progress=lambda what, done, total: seen.append((what, done, total)))  # fmt: skip
    steps = [what for what, _, _ in seen]
    assert steps[0] == "reading the input" and steps[-1] == "published"
    assert "slice 1/2: validating" in steps and "slice 2/2: writing" in steps
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and seen[-1][1] == seen[-1][2] == 10  # 2 slices × 5 steps, in order


class Terminated(BaseException):
    """What an orchestrator raises in a run it terminates (Dagster: DagsterExecutionInterruptedError)."""


def test_a_run_an_orchestrator_terminates_is_logged_and_its_stop_passed_on(two_runs):
    # Dagster's termination is a BaseException of its own, neither an error nor Ctrl-C: it went through
    # without a kare.runs row, so a run terminated in the UI left no trace in the warehouse's log.
    wh, second = two_runs
    before = snapshot_of(wh)

    def terminate(step: str) -> None:
        if step == "runs":
            raise Terminated

    with pytest.raises(Terminated):  # unchanged, for the orchestrator to finish its termination
        run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()),
                         fail_at=terminate)  # fmt: skip
    after = snapshot_of(wh)
    assert all(same_rows(after[t], before[t]) for t in TABLES if t != "runs")
    failed = after["runs"].filter(pl.col("status") == "failed")
    assert failed["message"].to_list() == ["interrupted (Terminated); nothing was published"]
    assert failed["input_rows"].to_list() == [second.height] and failed["rules_version"].to_list() == [RULES.version]


def test_ctrl_c_late_in_a_run_publishes_nothing_and_says_so(two_runs, capsys, monkeypatch, tmp_path):
    from kare_rules.cli import main

    wh, second = two_runs
    before = snapshot_of(wh)

    def interrupt(step: str) -> None:
        if step == "runs":  # the last write before the commit
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="interrupted; nothing was published"):
        run_organization(ORG, D1 + dt.timedelta(days=30), second, wh, bundle=RuleBundle(RULES, RULES_TEXT, ()),
                         fail_at=interrupt)  # fmt: skip
    after = snapshot_of(wh)
    assert all(same_rows(after[t], before[t]) for t in TABLES if t != "runs")
    assert after["runs"].filter(pl.col("status") == "failed")["message"].to_list() == [
        "interrupted (Ctrl-C); nothing was published"
    ]
    # From the command line: exit 130 and one sentence, no traceback.
    import kare_rules.run.engine as engine

    real = engine.run_organization
    monkeypatch.setattr(engine, "run_organization", lambda *a, **k: real(*a, **{**k, "fail_at": interrupt}))
    monkeypatch.setattr("kare_rules.run.run_organization", engine.run_organization)
    source = tmp_path / "second.parquet"
    second.write_parquet(source)
    code = main(["run", "--org", ORG, "--rules-dir", str(Path(__file__).resolve().parents[1] / "rules"),
                 "--input", str(source), "--warehouse", str(wh.path), "--as-of", "2026-09-30"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 130 and "interrupted; nothing was published" in err and "Traceback" not in err
