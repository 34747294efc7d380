"""kare-rules installed anywhere: the built wheel in a fresh virtual environment, the pre-commit hooks from
another repository, and the reusable pull-request workflow, each run in a scratch folder outside this checkout.

No network: the wheel and the hook environment take their dependencies from this project's environment
(installed from requirements.lock by `make setup`), so the only kare_rules they can import is the one just
built from the checkout.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from kare_rules.schema import schema_path

ROOT = Path(__file__).resolve().parents[1]
ORG = "cloudnine"
# Where `make setup` installed the locked dependencies; a .pth file (or PYTHONPATH) puts them behind a
# fresh environment's own site-packages, so installing them again (30 s and more) is not needed.
LOCKED_SITE = sysconfig.get_paths()["purelib"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "kare test",
    "GIT_AUTHOR_EMAIL": "test@kare.invalid",
    "GIT_COMMITTER_NAME": "kare test",
    "GIT_COMMITTER_EMAIL": "test@kare.invalid",
}


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def rules_folder(parent: Path) -> Path:
    """A folder holding only rules/<ORG>/kare.yaml, copied from this checkout."""
    (parent / "rules" / ORG).mkdir(parents=True)
    shutil.copy(ROOT / "rules" / ORG / "kare.yaml", parent / "rules" / ORG / "kare.yaml")
    return parent


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path} no longer holds {old!r}; update the test's edit"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, ROOT, cwd=out
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("kare_rules-*.whl")
    return path


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment outside the repository with kare-rules installed from the wheel."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    created = run(sys.executable, "-m", "venv", venv, cwd=venv.parent)
    assert created.returncode == 0, created.stderr
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv).stdout.strip()
    Path(site, "kare-locked-deps.pth").write_text(LOCKED_SITE + "\n", encoding="utf-8")
    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=venv)
    assert installed.returncode == 0, installed.stderr
    return bin_dir


# ---- the wheel ----------------------------------------------------------------------------------


def test_the_wheel_carries_the_same_schemas_as_the_top_level_folder(wheel):
    committed = {p.relative_to(ROOT / "schemas").as_posix(): p.read_bytes() for p in (ROOT / "schemas").rglob("*.json")}
    with zipfile.ZipFile(wheel) as whl:
        shipped = {
            n.removeprefix("kare_rules/schemas/"): whl.read(n)
            for n in whl.namelist()
            if n.startswith("kare_rules/schemas/")
        }
    assert "kare-rules.v1.schema.json" in shipped
    assert "tables/account_categories.json" in shipped
    assert shipped == committed


def test_in_a_checkout_the_schemas_are_the_top_level_files_editors_use():
    # `make setup` installs editable: the schema the validator reads is the one in schemas/, not a copy.
    assert Path(str(schema_path("kare-rules.v1.schema.json"))) == ROOT / "schemas" / "kare-rules.v1.schema.json"
    assert Path(str(schema_path("tables/runs.json"))) == ROOT / "schemas" / "tables" / "runs.json"


def test_kare_from_the_wheel_works_outside_the_repository(venv_bin, tmp_path):
    work = rules_folder(tmp_path)
    kare = venv_bin / "kare"

    where = run(venv_bin / "python", "-c", "import kare_rules; print(kare_rules.__file__)", cwd=work)
    assert Path(where.stdout.strip()).is_relative_to(venv_bin.parent), where.stdout + where.stderr

    validated = run(kare, "validate", "rules", cwd=work)
    assert (validated.returncode, validated.stdout.strip()) == (0, "1 valid, 0 invalid"), validated.stderr

    tested = run(kare, "test", "rules", cwd=work)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert re.search(r"^\d+ passed, 0 failed$", tested.stdout, re.M), tested.stdout

    schema = run(kare, "schema", cwd=work)
    assert schema.returncode == 0, schema.stderr
    assert json.loads(schema.stdout) == json.loads((ROOT / "schemas" / "kare-rules.v1.schema.json").read_text())

    sampled = run(
        kare, "sample", "--rules-dir", "rules", "--out", "data", "--accounts", "200", "--months", "1", cwd=work
    )
    assert sampled.returncode == 0, sampled.stderr
    accounts = f"data/{ORG}/latest.parquet"

    categorized = run(kare, "categorize", "--rules", f"rules/{ORG}", "--input", accounts, "--as-of", "2026-10-31",
                      "--output", "out.csv", cwd=work)  # fmt: skip
    assert categorized.returncode == 0, categorized.stderr
    assert "accounts categorized with cloudnine" in categorized.stdout
    lines = (work / "out.csv").read_text().splitlines()
    assert lines[0].startswith("account_id,category,matched_rule")
    first_account = lines[1].split(",")[0]

    explained = run(kare, "explain", "--rules", f"rules/{ORG}", "--input", accounts, "--as-of", "2026-10-31",
                    "--account", first_account, cwd=work)  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith(f"account {first_account} as of 2026-10-31 (cloudnine ")

    compiled = run(kare, "compile", "--rules", f"rules/{ORG}", "--dialect", "duckdb", "--table", "accounts",
                   "--as-of", "2026-10-31", cwd=work)  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.lstrip().startswith("SELECT")

    after = work / "after.yaml"
    shutil.copy(work / "rules" / ORG / "kare.yaml", after)
    edit(after, "version: 1.1.0", "version: 1.2.0")
    edit(after, "{arr: {gte: 100000}}", "{arr: {gte: 80000}}")
    diffed = run(kare, "diff", "--before", f"rules/{ORG}/kare.yaml", "--after", after, "--input", accounts,
                 "--as-of", "2026-10-31", cwd=work)  # fmt: skip
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr
    assert "trait strategic: arr ≥ 100000 → ≥ 80000" in diffed.stdout

    ran = run(kare, "run", "--org", ORG, "--input", accounts, "--as-of", "2026-10-31",
              "--warehouse", "wh.duckdb", cwd=work)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "published" in ran.stdout and "200 rows" in ran.stdout

    # The schema is read on the error path too: a broken file is a located message, not a traceback.
    edit(work / "rules" / ORG / "kare.yaml", "format: kare/v1", "format: kare/v9")
    broken = run(kare, "validate", "rules", cwd=work)
    assert broken.returncode == 1
    assert f"rules/{ORG}/kare.yaml:" in broken.stdout + broken.stderr
    assert "Traceback" not in broken.stdout + broken.stderr


# ---- pre-commit ---------------------------------------------------------------------------------


def try_repo(repo: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo <this checkout> --all-files` (every hook of .pre-commit-hooks.yaml) in `repo`.

    The hooks are `language: python`: pre-commit makes a virtualenv and pip-installs this checkout into it
    (a real, non-editable build). Offline: no index; the build backend and the dependencies are found on
    PYTHONPATH (this project's locked environment) and count as installed, so pip only builds kare-rules.
    """
    env = {
        **os.environ,
        **GIT_ENV,
        "PRE_COMMIT_HOME": str(home),
        "PYTHONPATH": LOCKED_SITE,
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip's inverted spelling: build without isolation
    }
    return run(Path(sys.executable).with_name("pre-commit"), "try-repo", ROOT, "--all-files", cwd=repo, env=env)


def hook_results(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(kare \w+) \(.*?\)\.+(Passed|Failed)$", output, re.M))


@pytest.fixture
def scratch_repo(tmp_path) -> Path:
    repo = rules_folder(tmp_path / "rules-repo")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "rules"]):
        done = run("git", *cmd, cwd=repo, env={**os.environ, **GIT_ENV})
        assert done.returncode == 0, done.stderr
    return repo


def test_pre_commit_hooks_pass_on_valid_rules_in_another_repository(scratch_repo, tmp_path):
    result = try_repo(scratch_repo, tmp_path / "pre-commit-home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert hook_results(result.stdout) == {"kare validate": "Passed", "kare test": "Passed"}


def test_pre_commit_validate_hook_fails_naming_file_and_line(scratch_repo, tmp_path):
    edit(scratch_repo / "rules" / ORG / "kare.yaml", "{arr: {gte: 100000}}", "{ar: {gte: 100000}}")
    result = try_repo(scratch_repo, tmp_path / "pre-commit-home")
    assert result.returncode == 1
    assert hook_results(result.stdout)["kare validate"] == "Failed"
    assert f"rules/{ORG}/kare.yaml:30:29: unknown column 'ar'; did you mean 'arr'?" in result.stdout


def test_pre_commit_test_hook_fails_naming_the_test_line(scratch_repo, tmp_path):
    rule_file = scratch_repo / "rules" / ORG / "kare.yaml"
    lines = rule_file.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[94].strip() == "expect: expand"  # the first embedded test, named on line 92
    lines[94] = lines[94].replace("expand", "keep")
    rule_file.write_text("".join(lines), encoding="utf-8")
    result = try_repo(scratch_repo, tmp_path / "pre-commit-home")
    assert result.returncode == 1
    assert hook_results(result.stdout) == {"kare validate": "Passed", "kare test": "Failed"}
    assert f"FAIL rules/{ORG}/kare.yaml:92 strategic healthy customer is expand" in result.stdout


# ---- GitHub workflows ---------------------------------------------------------------------------

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTIONS = sorted([*ROOT.glob("action.y*ml"), *(ROOT / ".github").rglob("action.y*ml")])


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("check-jsonschema")
    return run(exe, "--builtin-schema", schema, *files, cwd=ROOT)


def test_every_workflow_and_action_file_matches_githubs_schema(tmp_path):
    assert {p.name for p in WORKFLOWS} >= {"rules-pr.yml", "kare-impact.yml"}
    checked = check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if ACTIONS:
        checked = check_jsonschema("vendor.github-actions", *ACTIONS)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # The caller shown in the docs is a valid workflow too.
    shown = re.findall(
        r"```yaml\n(# \.github/workflows/.*?)```", (ROOT / "docs" / "pull-requests.md").read_text(), re.S
    )
    assert len(shown) == 1
    (tmp_path / "caller.yml").write_text(shown[0], encoding="utf-8")
    checked = check_jsonschema("vendor.github-workflows", tmp_path / "caller.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check can fail: a job without runs-on or uses is rejected.
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("on: push\njobs:\n  x:\n    steps:\n      - run: echo\n", encoding="utf-8")
    assert check_jsonschema("vendor.github-workflows", wrong).returncode == 1


def test_the_callers_shown_to_adopters_cancel_the_run_of_a_superseded_push():
    # Each push runs the workflow; without a concurrency group two runs of one pull request overlap, and the
    # older push's, finishing last, leaves its report in the one comment as if it were the newer push's.
    docs = (ROOT / "docs" / "pull-requests.md").read_text(encoding="utf-8")
    (shown,) = re.findall(r"```yaml\n(# \.github/workflows/.*?)```", docs, re.S)
    header = "\n".join(
        line.removeprefix("#   ")
        for line in (ROOT / ".github" / "workflows" / "kare-impact.yml").read_text(encoding="utf-8").splitlines()
        if line.startswith("#   ")
    )
    for caller in (yaml.safe_load(shown), yaml.safe_load(header)):
        assert caller["concurrency"]["cancel-in-progress"] is True, caller
        assert "github.event.pull_request.number" in caller["concurrency"]["group"], caller
        assert caller["jobs"]["impact"]["uses"].endswith("/.github/workflows/kare-impact.yml@v0.1.0")


def test_this_repository_calls_the_reusable_workflow_with_its_lock():
    caller = yaml.safe_load((ROOT / ".github" / "workflows" / "rules-pr.yml").read_text(encoding="utf-8"))
    (job,) = caller["jobs"].values()
    assert job["uses"] == "./.github/workflows/kare-impact.yml"
    assert job["with"]["kare-spec"] == "."
    assert job["with"]["lock-file"] == "requirements.lock"
    called = yaml.safe_load((ROOT / ".github" / "workflows" / "kare-impact.yml").read_text(encoding="utf-8"))
    assert set(job["with"]) <= set(called[True]["workflow_call"]["inputs"])  # PyYAML reads `on:` as True


EXPRESSION = re.compile(r"^\$\{\{\s*(\S+)\s*\}\}$")


def run_workflow_steps(workflow: Path, inputs: dict[str, str], github: dict[str, str], cwd: Path, env: dict) -> dict:
    """Run a workflow's `run:` steps as the runner would (bash -eo pipefail), outside GitHub.

    Inputs reach the scripts through `env:` only; an `${{ }}` inside a script fails the test (it would paste
    an input into shell code). `if:` conditions are the few forms the workflow uses; a new form fails here.
    """
    spec = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    declared = spec[True]["workflow_call"]["inputs"]
    values = {f"inputs.{k}": str(inputs.get(k, v.get("default", ""))).lower() if v["type"] == "boolean"
              else str(inputs.get(k, v.get("default", ""))) for k, v in declared.items()}  # fmt: skip
    values |= {f"github.{k}": v for k, v in github.items()}
    steps: dict[str, dict] = {}

    def resolve(value: str) -> str:
        match = EXPRESSION.match(str(value))
        if not match:
            assert "${{" not in str(value), f"only whole `${{{{ name }}}}` values are understood: {value}"
            return str(value)
        name = match.group(1)
        if name.startswith("steps.") and name.endswith(".outcome"):
            return steps.get(name.split(".")[1], {}).get("outcome", "")
        if name.startswith("steps."):
            _, step, kind, key = name.split(".")
            return steps.get(step, {}).get(kind, {}).get(key, "")
        assert name in values, f"{workflow.name} uses {name}, which the test does not provide"
        return values[name]

    def condition(expr: str | None) -> bool:
        if expr is None:
            return not any(s["outcome"] == "failure" and not s["continue"] for s in steps.values())
        if m := re.fullmatch(r"steps\.(\w+)\.outcome == 'failure'", expr):
            return steps[m.group(1)]["outcome"] == "failure"
        if m := re.fullmatch(r"always\(\) && \((.+)\)", expr):
            failed = [re.fullmatch(r"steps\.(\w+)\.outcome == 'failure'", e) for e in m.group(1).split(" || ")]
            assert all(failed), f"{workflow.name}: the test does not understand `if: {expr}`"
            return any(steps.get(f.group(1), {}).get("outcome") == "failure" for f in failed)
        if m := re.fullmatch(r"always\(\) && steps\.(\w+)\.outputs\.report != ''", expr):
            return bool(steps.get(m.group(1), {}).get("outputs", {}).get("report"))
        raise AssertionError(f"{workflow.name}: the test does not understand `if: {expr}`")

    (job,) = spec["jobs"].values()
    job_env = {k: resolve(v) for k, v in job.get("env", {}).items()}
    for number, step in enumerate(job["steps"]):
        if "run" not in step or not condition(step.get("if")):
            continue
        assert "${{" not in step["run"], f"step {step.get('name')!r} pastes an expression into its script"
        output_file = cwd.parent / f"output-{number}"
        output_file.write_text("")
        step_env = {**env, **job_env, **{k: resolve(v) for k, v in step.get("env", {}).items()}}
        step_env["GITHUB_OUTPUT"] = str(output_file)
        done = run("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"], cwd=cwd, env=step_env)
        outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
        steps[step.get("id", f"step{number}")] = {
            "name": step.get("name"),
            "outcome": "success" if done.returncode == 0 else "failure",
            "continue": step.get("continue-on-error", False),
            "outputs": outputs,
            "stdout": done.stdout + done.stderr,
        }
    return steps


def rules_repo(tmp_path: Path) -> Path:
    """`rules_folder` as a rules-only git repository: branch main, the rules committed."""
    repo = rules_folder(tmp_path / "rules-repo")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "rules 1.1.0"]):
        assert run("git", *cmd, cwd=repo, env={**os.environ, **GIT_ENV}).returncode == 0
    return repo


def impact_workflow(venv_bin: Path, wheel: Path, repo: Path, tmp_path: Path, inputs: dict, github: dict) -> dict:
    """kare-impact.yml's steps run in `repo` with the wheel, as a runner would: RUNNER_TEMP is
    tmp_path/runner-temp, the job summary tmp_path/summary.md."""
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",  # what setup-python does
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "PIP_NO_INDEX": "1",
    }
    workflow = ROOT / ".github" / "workflows" / "kare-impact.yml"
    return run_workflow_steps(workflow, inputs={"kare-spec": str(wheel), **inputs}, github=github, cwd=repo, env=env)


def test_the_reusable_workflow_steps_report_a_rule_change_in_a_rules_only_repository(venv_bin, wheel, tmp_path):
    repo = rules_repo(tmp_path)
    # The pull request: a lower threshold and the version bump it needs; the base branch is origin/main.
    assert run("git", "update-ref", "refs/remotes/origin/main", "HEAD", cwd=repo).returncode == 0
    edit(repo / "rules" / ORG / "kare.yaml", "version: 1.1.0", "version: 1.2.0")
    edit(repo / "rules" / ORG / "kare.yaml", "{arr: {gte: 100000}}", "{arr: {gte: 80000}}")

    steps = impact_workflow(
        venv_bin, wheel, repo, tmp_path, {"as-of": "2026-10-31"}, {"base_ref": "main", "event_name": "pull_request"}
    )
    ran = {s["name"]: s["outcome"] for s in steps.values()}
    assert ran == {
        "Install kare-rules": "success",
        "Validate the rules": "success",
        "Run the embedded rule tests": "success",
        "Choose the account snapshot": "success",
        "Impact report (kare diff)": "success",
        "Job summary": "success",
    }, {s["name"]: s["stdout"] for s in steps.values()}
    report = Path(steps["diff"]["outputs"]["report"])
    assert report.is_relative_to(tmp_path / "runner-temp")
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!-- kare-diff -->")
    assert "**cloudnine 1.1.0 → 1.2.0**" in text
    assert "trait strategic: arr ≥ 100000 → ≥ 80000" in text
    assert "version check ✅" in text
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == text
    assert run("git", "status", "--porcelain", cwd=repo).stdout.splitlines() == [f" M rules/{ORG}/kare.yaml"]


def test_the_reusable_workflow_fails_the_job_when_the_version_is_not_bumped(venv_bin, wheel, tmp_path):
    repo = rules_repo(tmp_path)
    edit(repo / "rules" / ORG / "kare.yaml", "{arr: {gte: 100000}}", "{arr: {gte: 80000}}")
    steps = impact_workflow(
        venv_bin,
        wheel,
        repo,
        tmp_path,
        {"as-of": "2026-10-31", "base-ref": "main"},
        {"base_ref": "", "event_name": "pull_request"},
    )
    assert steps["diff"]["outcome"] == "failure"
    assert "version did not increase" in Path(steps["diff"]["outputs"]["report"]).read_text(encoding="utf-8")
    failed = [s for s in steps.values() if s["name"] == "Fail when a check failed"]
    assert [s["outcome"] for s in failed] == ["failure"]
    assert "a version check failed" in failed[0]["stdout"]


def test_the_reusable_workflow_reports_a_failing_embedded_test_before_it_fails_the_job(venv_bin, wheel, tmp_path):
    # The report lists each failing test with the account's evaluation: the comment must be posted before
    # the job fails, not skipped because `kare test` failed first.
    repo = rules_repo(tmp_path)
    edit(repo / "rules" / ORG / "kare.yaml", "    expect: attain", "    expect: keep")
    steps = impact_workflow(
        venv_bin,
        wheel,
        repo,
        tmp_path,
        {"as-of": "2026-10-31", "base-ref": "main"},
        {"base_ref": "", "event_name": "pull_request"},
    )
    assert steps["tests"]["outcome"] == "failure"
    assert steps["diff"]["outcome"] == "success"
    report = Path(steps["diff"]["outputs"]["report"]).read_text(encoding="utf-8")
    assert "after: 14 passed, 1 failed ❌" in report
    assert "expected `keep`, got `attain`" in report
    (failed,) = [s for s in steps.values() if s["name"] == "Fail when a check failed"]
    assert failed["outcome"] == "failure"
    assert "embedded rule tests failed" in failed["stdout"]
    assert "a version check failed" not in failed["stdout"]


def test_the_reusable_workflow_comments_the_problems_of_an_invalid_rule_file(venv_bin, wheel, tmp_path):
    # kare diff makes no report from an invalid rule file; without one the comment was left as an earlier
    # push wrote it (all green, say) while this push could not even be read. The comment lists the problems.
    repo = rules_repo(tmp_path)
    edit(repo / "rules" / ORG / "kare.yaml", "{arr: {gte: 100000}}", "{revenue: {gte: 80000}}")
    steps = impact_workflow(
        venv_bin,
        wheel,
        repo,
        tmp_path,
        {"as-of": "2026-10-31", "base-ref": "main"},
        {"base_ref": "", "event_name": "pull_request"},
    )
    assert (steps["validate"]["outcome"], steps.get("diff", {}).get("outcome")) == ("failure", "failure")
    report = Path(steps["diff"]["outputs"]["report"]).read_text(encoding="utf-8")
    assert report.startswith("<!-- kare-diff -->\n## KARE rule changes against `main`")
    assert "**No impact report**: kare diff cannot compare invalid rule files (below)." in report
    assert "**Invalid rule files** (kare validate): each line names FILE:LINE:COLUMN" in report
    problem = re.search(rf"^rules/{ORG}/kare\.yaml:(\d+):(\d+): unknown column 'revenue'", report, re.MULTILINE)
    assert problem, report
    assert "0 valid, 1 invalid" in report
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == report
    (failed,) = [s for s in steps.values() if s["name"] == "Fail when a check failed"]
    assert failed["outcome"] == "failure"
    assert "kare validate found invalid rule files (see the comment" in failed["stdout"]
    assert "no account sample could be generated" not in failed["stdout"]  # kare sample stopped on the same file


def test_without_snapshot_or_as_of_the_sample_and_the_report_share_this_months_date(venv_bin, wheel, tmp_path):
    # kare sample's default month is fixed; a workflow measuring it as of today would probe the rules' day
    # thresholds (churned within 365 days, …) further off every month. The sample is made for the current
    # month instead, and the report measures on the sample's own date.
    repo = rules_repo(tmp_path)
    edit(repo / "rules" / ORG / "kare.yaml", "version: 1.1.0", "version: 1.2.0")
    edit(repo / "rules" / ORG / "kare.yaml", "{arr: {gte: 100000}}", "{arr: {gte: 80000}}")
    today = dt.datetime.now(dt.UTC).date()
    steps = impact_workflow(
        venv_bin, wheel, repo, tmp_path, {"base-ref": "main"}, {"base_ref": "", "event_name": "pull_request"}
    )
    (sample,) = [p for p in (tmp_path / "runner-temp" / "kare-sample" / ORG).glob("2*.parquet")]
    sample_date = dt.date.fromisoformat(sample.stem)
    assert today <= sample_date <= today + dt.timedelta(days=31)  # the last day of this month
    assert steps["snapshot"]["outputs"]["as_of"] == sample.stem
    report = Path(steps["diff"]["outputs"]["report"]).read_text(encoding="utf-8")
    assert f"input rows, as of {sample.stem})" in report


def test_the_wheel_needs_dagster_only_for_the_pipeline_extra(wheel):
    with zipfile.ZipFile(wheel) as whl:
        (name,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [line.removeprefix("Requires-Dist: ") for line in whl.read(name).decode().splitlines()
                    if line.startswith("Requires-Dist: ")]  # fmt: skip
    dagster = [r for r in requires if r.startswith("dagster")]
    assert len(dagster) == 3 and all(r.endswith("; extra == 'pipeline'") for r in dagster)
    assert any(r.startswith("polars") and "extra" not in r for r in requires)
