"""Rule files as they were at a git ref, next to the ones in the working tree: the pairs `kare diff --base` compares.

Git runs with an argument list, never through a shell, so a ref or path is never interpreted. Names
read from a git tree are checked as names read from disk are (an organization is a safe slug), and
files are only ever written inside the scratch folder: a tree entry named `..` or `acme\n` is refused.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from kare_rules import model as m
from kare_rules.errors import KareError, RuleFileError, UsageError
from kare_rules.loader import RULE_FILE_NAMES, is_safe_org, load_rules
from kare_rules.overrides import OVERRIDES_FILE, Override, load_overrides
from kare_rules.yamlsource import MAX_FILE_BYTES, RefusedFile, parse_text, read_regular_file


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed or not on PATH; kare diff --base needs it") from None


class OrgVersions(NamedTuple):
    """One organization at the base ref and now: its rules (None where the rule file is absent) and the
    overrides beside them (empty without an overrides.yaml)."""

    org: str
    before: m.RuleSet | None
    after: m.RuleSet | None
    overrides_before: tuple[Override, ...] = ()
    overrides_after: tuple[Override, ...] = ()
    # Why the files at the base could not be read (then before is None), and the version written there.
    base_problem: str | None = None
    base_version: str | None = None


def _is_rules_path(parts: tuple[str, ...]) -> bool:
    """ORG/kare.yaml, ORG/overrides.yaml or ORG/tests/NAME.yaml: the files one organization's rules are
    made of. overrides.yaml is reviewed by pull request like the rules, so a change of it alone is a change."""
    is_rule = len(parts) == 2 and parts[1] in (*RULE_FILE_NAMES, OVERRIDES_FILE)
    is_test = len(parts) == 3 and parts[1] == "tests" and parts[2].endswith((".yaml", ".yml"))
    return is_rule or is_test


def _org_files(files: dict[str, bytes | None]) -> dict[str, dict[str, bytes | None]]:
    """{org: {relative path in the org dir: content}} for orgs that have a rule file."""
    orgs: dict[str, dict[str, bytes | None]] = {}
    for rel, content in files.items():
        parts = PurePosixPath(rel).parts
        if _is_rules_path(parts):
            orgs.setdefault(parts[0], {})["/".join(parts[1:])] = content
    return {org: f for org, f in orgs.items() if any(name in f for name in RULE_FILE_NAMES)}


def _check_org_name(org: str, where: str) -> None:
    if not is_safe_org(org):
        raise KareError(
            f"{where}: {org!r} is not an organization name (lowercase letters, digits and '-'), so kare diff "
            "cannot compare it; rename that directory under the rules directory"
        )


def _files_at(base: str, top: Path, rel_dir: str) -> dict[str, bytes]:
    """The rule and test files under `rel_dir` at `base`, read by object id: a name from the tree is
    never handed back to git as a path, and every organization name in it must be a safe slug."""
    listed = _git(["ls-tree", "-r", "-z", base, "--", rel_dir or "."], top)
    if listed.returncode:
        raise KareError(f"git ls-tree {base} failed: {listed.stderr.decode(errors='replace').strip()}")
    out = {}
    for entry in filter(None, listed.stdout.split(b"\0")):
        meta, _, raw_path = entry.partition(b"\t")
        _mode, kind, oid = meta.decode().split()
        path = raw_path.decode("utf-8", errors="surrogateescape")
        parts = path.split("/")
        prefix = rel_dir.split("/") if rel_dir else []
        if kind != "blob" or parts[: len(prefix)] != prefix:
            continue
        rel = tuple(parts[len(prefix) :])
        if not _is_rules_path(rel):
            continue
        _check_org_name(rel[0], f"{base}:{path!r}")
        shown = _git(["cat-file", "blob", oid], top)
        if shown.returncode:
            raise KareError(
                f"git cat-file {oid} ({base}:{path!r}) failed: {shown.stderr.decode(errors='replace').strip()}"
            )
        out["/".join(rel)] = shown.stdout
    return out


def _files_now(rules_dir: Path) -> dict[str, bytes | None]:
    """The rule, overrides and test files in the working tree. Only those are read, as the loader reads
    them (a regular file within the size limit): another file beside them, or one linked to a device or
    to something large outside the repository, is never opened. None for a file refused so: the
    organization then counts as changed and loading it says why."""
    out: dict[str, bytes | None] = {}
    for path in sorted(rules_dir.glob("*/*")) + sorted(rules_dir.glob("*/tests/*")):
        rel = path.relative_to(rules_dir)
        if not _is_rules_path(rel.parts) or not path.is_file():
            continue
        try:
            out[rel.as_posix()] = read_regular_file(path, MAX_FILE_BYTES)
        except (RefusedFile, OSError):
            out[rel.as_posix()] = None
    return out


class _InvalidAtBase(Exception):
    """The files at the base are not valid: the message locates their first problems."""

    def __init__(self, message: str, version: str | None):
        super().__init__(message)
        self.version = version


def _problems_at(exc: RuleFileError, where: str) -> str:
    """The first problems of a file at the base, located in it as `kare validate` would print them."""
    shown = [f"{where}:{p.line}:{p.column}: {p.message}" for p in exc.problems[:3]]
    more = len(exc.problems) - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _version_written(content: bytes) -> str | None:
    """The `version:` a rule file states, read from its YAML alone (its other problems aside)."""
    try:
        data = parse_text(content.decode("utf-8"), "kare.yaml").data
    except UnicodeDecodeError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _load_old(org: str, files: dict[str, bytes], label: str) -> tuple[m.RuleSet, tuple[Override, ...]]:
    """Load a past version and its overrides from a scratch copy of its org directory (the loader checks
    the directory name). _InvalidAtBase when they are not valid: a branch that repairs them must still
    get its report (kare-rules may have learned a check since they were merged)."""
    _check_org_name(org, label)
    with tempfile.TemporaryDirectory(prefix="kare-diff-") as tmp:
        root = Path(tmp).resolve()
        org_dir = (root / org).resolve()
        for rel, content in files.items():
            target = (org_dir / rel).resolve()
            # Never write outside the scratch copy, whatever the names say.
            if org_dir.parent != root or not target.is_relative_to(org_dir):
                raise KareError(f"{label}/{rel!r} is not a path inside the organization's directory; rename it")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        rule_file = next(name for name in RULE_FILE_NAMES if name in files)
        try:
            rules = load_rules(org_dir / rule_file)
        except RuleFileError as exc:
            problems = _problems_at(exc, f"{label}/{rule_file}")
            raise _InvalidAtBase(problems, _version_written(files[rule_file])) from None
        try:
            overrides = load_overrides(org_dir / OVERRIDES_FILE, rules)
        except RuleFileError as exc:
            raise _InvalidAtBase(_problems_at(exc, f"{label}/{OVERRIDES_FILE}"), rules.version) from None
        return replace(rules, path=f"{label}/{rule_file}"), overrides


def changed_rules(base: str, rules_dir: str | Path = "rules") -> list[OrgVersions]:
    """Every org whose rule, test or overrides files differ from `base`: its rules and overrides at
    `base` and now.

    A rule file new in the working tree comes with None before; a deleted one with None after.
    """
    rules_dir = Path(rules_dir)
    if not rules_dir.is_dir():
        what = "is a file, not a folder" if rules_dir.exists() else "does not exist"
        raise UsageError(f"rules directory {rules_dir} {what}; pass --rules-dir DIR, the folder of <org>/kare.yaml")
    held = [name for name in RULE_FILE_NAMES if (rules_dir / name).is_file()]
    if held:  # its organizations would be its subfolders: none, so 'nothing differs' whatever the change
        raise UsageError(
            f"{rules_dir} holds {held[0]}: it is one organization's folder, not the rules directory; pass the "
            f"folder that holds the organizations' folders, --rules-dir {os.path.normpath(rules_dir / '..')}"
        )
    found = _git(["rev-parse", "--show-toplevel"], rules_dir)
    if found.returncode:
        raise UsageError(f"{rules_dir} is not inside a git repository; use --before/--after to compare two files")
    top = Path(found.stdout.decode().strip())
    if base.startswith("-"):  # never handed to git, where it would read as an option
        raise UsageError(f"--base {base!r} is not a git ref (a ref never starts with '-'); give a branch, tag or "
                         "commit, e.g. --base origin/main")  # fmt: skip
    if _git(["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], top).returncode:
        raise UsageError(
            f"unknown git ref {base!r}; fetch it first (in GitHub Actions: actions/checkout with fetch-depth: 0)"
        )
    rel_dir = rules_dir.resolve().relative_to(top.resolve()).as_posix()
    rel_dir = "" if rel_dir == "." else rel_dir
    old = _org_files(_files_at(base, top, rel_dir))
    new = _org_files(_files_now(rules_dir))
    for org in new:
        _check_org_name(org, str(rules_dir / org))
    out = []
    for org in sorted(old.keys() | new.keys()):
        if old.get(org) == new.get(org):
            continue
        label = f"{base}:{rel_dir + '/' if rel_dir else ''}{org}"
        after, overrides_after = None, ()
        if org in new:
            rule_file = next(name for name in RULE_FILE_NAMES if name in new[org])
            after = load_rules(rules_dir / org / rule_file)
            overrides_after = load_overrides(rules_dir / org / OVERRIDES_FILE, after)
        before, overrides_before, problem, version = None, (), None, None
        if org in old:
            try:
                before, overrides_before = _load_old(org, old[org], label)
            except _InvalidAtBase as exc:
                if after is None:  # removing an invalid rule file: nothing to compare, nothing to report
                    continue
                problem, version = str(exc), exc.version
        out.append(OrgVersions(org, before, after, overrides_before, overrides_after, problem, version))
    return out
