"""Every example in README.md and docs/*.md is a test: rule files shown validate, and shown output is real.

The convention, for whoever edits the docs:

- A ```yaml block that holds `format: kare/v1` is a rule file. It is written to
  rules/<organization>/kare.yaml in an empty folder and must pass `kare validate` and `kare test`, unless the
  line before its fence is `<!-- invalid -->` (an example of mistakes; its messages are then shown below it).
- Each document runs in its own folder holding a copy of this repository's rules/ (committed, so
  `kare diff --base HEAD` works), and the document's steps run there from top to bottom:
  - `<!-- file: PATH -->` right before a fenced block writes the block to PATH; `<!-- append: PATH -->`
    appends it; `<!-- patch -->` applies a ```diff block with `git apply`; `<!-- copy: SRC DST -->` copies.
  - A ```console block is a terminal session: each `$ ` line is run with bash (`kare` is the installed
    command), and the lines under it are what it prints, stdout and stderr together. A line holding only
    `...` stands for any number of lines. `$?` is the previous command's exit code.
  - `<!-- output: COMMAND -->` right before a fenced block says the block is COMMAND's output; before
    anything else it opens a region of Markdown, closed by `<!-- /output -->`, that is COMMAND's output
    (a report shown rendered).
  - `<!-- rows: FILE.duckdb -->` right before a fenced block says it holds rows of the ```sql block above,
    run on that DuckDB file, as `│ value │ value │` lines (a first line of column names is optional;
    NULL is a null). A last line `…` means more rows follow; a value ending in `…` is cut.
- Output is compared line by line after trimming trailing spaces; VOLATILE lists what is normalized
  (nothing yet: every command shown takes a fixed --as-of).

To rewrite the shown output after a deliberate change: `.venv/bin/python tests/test_docs.py --update
docs/FILE.md`, then read the diff before committing it.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
VOLATILE: list[tuple[re.Pattern[str], str]] = []
DIRECTIVE = re.compile(r"^\s*<!--\s*(file|append|patch|copy|invalid|output|/output|rows)\b:?\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```([\w-]*)\s*$")


@dataclass
class Block:
    """A fenced block, with the directives on the lines right above it."""

    doc: Path
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence
    lang: str
    text: str
    indent: str
    directives: dict[str, str] = field(default_factory=dict)


@dataclass
class Region:
    """<!-- output: COMMAND --> ... <!-- /output -->: Markdown that is COMMAND's output."""

    doc: Path
    line: int
    end: int
    command: str
    text: str


@dataclass
class Step:
    """A directive that stands alone (copy)."""

    doc: Path
    line: int
    kind: str
    arg: str


def parse(doc: Path) -> list[Block | Region | Step]:
    lines = doc.read_text(encoding="utf-8").split("\n")
    events: list[Block | Region | Step] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if fence := FENCE.match(lines[i]):
            indent, lang = fence.groups()
            j = i + 1
            while not re.match(rf"^{indent}```\s*$", lines[j]):
                j += 1
            body = [ln.removeprefix(indent) for ln in lines[i + 1 : j]]
            events.append(Block(doc, i + 1, j + 1, lang, "\n".join(body) + "\n", indent, pending))
            pending = {}
            i = j + 1
            continue
        if directive := DIRECTIVE.match(lines[i]):
            kind, arg = directive.groups()
            next_is_fence = i + 1 < len(lines) and (FENCE.match(lines[i + 1]) or DIRECTIVE.match(lines[i + 1]))
            if kind == "copy":
                events.append(Step(doc, i + 1, kind, arg))
            elif kind == "output" and not next_is_fence:
                j = i + 1
                while not re.match(r"^\s*<!--\s*/output\s*-->\s*$", lines[j]):
                    j += 1
                events.append(Region(doc, i + 1, j + 1, arg, "\n".join(lines[i + 1 : j]) + "\n"))
                i = j + 1
                continue
            else:
                assert next_is_fence, f"{doc.name}:{i + 1}: <!-- {kind} --> must be right above a fenced block"
                pending[kind] = arg
        i += 1
    return events


def rule_file_blocks() -> list[Block]:
    return [
        e
        for doc in DOCS
        for e in parse(doc)
        if isinstance(e, Block) and e.lang == "yaml" and re.search(r"^format: kare/v1\s*$", e.text, re.M)
    ]


def executable(doc: Path) -> bool:
    return any(
        isinstance(e, Region) or (isinstance(e, Block) and (e.lang == "console" or "output" in e.directives))
        for e in parse(doc)
    )


def kare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kare"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# ---- rule files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("block", rule_file_blocks(), ids=lambda b: f"{b.doc.name}:{b.line}")
def test_every_rule_file_shown_in_the_docs_validates(block, tmp_path):
    org = yaml.safe_load(block.text)["organization"]
    (tmp_path / "rules" / org).mkdir(parents=True)
    (tmp_path / "rules" / org / "kare.yaml").write_text(block.text, encoding="utf-8")
    validated = kare("validate", "rules", cwd=tmp_path)
    where = f"{block.doc.relative_to(ROOT)}:{block.line}"
    if "invalid" in block.directives:
        assert validated.returncode == 1, f"{where} is marked <!-- invalid --> but validates"
        return
    assert validated.returncode == 0, f"{where}: the rule file shown does not validate:\n{validated.stdout}"
    tested = kare("test", "rules", cwd=tmp_path)
    assert tested.returncode == 0, f"{where}: its embedded tests fail:\n{tested.stdout}"


def test_the_readme_headline_rule_file_is_checked():
    assert any(b.doc.name == "README.md" for b in rule_file_blocks())
    assert {b.doc.name for b in rule_file_blocks()} >= {"README.md", "rule-format.md"}


# ---- shown output -------------------------------------------------------------------------------


def normalize(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))


def matches(expected: str, actual: str) -> bool:
    """Line by line; a line of only `...` in `expected` stands for any lines."""
    parts = [r"(?:[^\n]*\n)*?" if ln == "..." else re.escape(ln) + r"\n" for ln in normalize(expected).split("\n")]
    return re.fullmatch("".join(parts), normalize(actual) + "\n") is not None


class Session:
    """A document's folder and its terminal: commands run in order, `$?` is the last exit code."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.status = 0
        shutil.copytree(ROOT / "rules", folder / "rules")
        env = {**os.environ, "GIT_AUTHOR_NAME": "docs", "GIT_AUTHOR_EMAIL": "docs@kare.invalid"}
        env |= {"GIT_COMMITTER_NAME": "docs", "GIT_COMMITTER_EMAIL": "docs@kare.invalid"}
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "the bundled rules"]):
            subprocess.run(["git", *cmd], cwd=folder, env=env, check=True, capture_output=True)

    def run(self, command: str) -> str:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", f"(exit {self.status}); {command}"],
            cwd=self.folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        self.status = done.returncode
        return done.stdout

    def apply(self, block: Block) -> None:
        d = block.directives
        if "file" in d or "append" in d:
            path = self.folder / (d.get("file") or d["append"])
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w" if "file" in d else "a", encoding="utf-8") as f:
                f.write(block.text)
        if "patch" in d:
            done = subprocess.run(
                ["git", "apply", "-"], input=block.text, cwd=self.folder, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{block.doc.name}:{block.line}: the patch does not apply: {done.stderr}"


def console_session(block: Block) -> list[tuple[str, str, int]]:
    """(command, expected output, line) for each `$ ` line of a console block."""
    steps: list[tuple[str, list[str], int]] = []
    for offset, line in enumerate(block.text.rstrip("\n").split("\n"), start=1):
        if line.startswith("$ "):
            steps.append((line[2:], [], block.line + offset))
        else:
            assert steps, f"{block.doc.name}:{block.line}: a console block starts with a `$ ` command"
            steps[-1][1].append(line)
    return [(cmd, "\n".join(out), line) for cmd, out, line in steps]


def cell_text(value: object) -> str:
    if value is None:
        return "NULL"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def rows_mismatch(shown: str, columns: list[str], rows: list[tuple]) -> str:
    """Why the rows shown are not the query's first rows ('' when they are)."""
    lines = [ln.strip() for ln in shown.strip("\n").split("\n")]
    more = lines[-1] == "…"
    cells = [[c.strip() for c in ln.strip("│").split("│")] for ln in lines[: -1 if more else None]]
    if cells and cells[0] == columns:
        cells = cells[1:]
    actual = [[cell_text(v) for v in row] for row in rows]
    if len(cells) > len(actual) or (not more and len(cells) != len(actual)):
        return f"{len(cells)} rows shown{' and more' if more else ''}, but the query gives {len(actual)}"
    for number, (seen, real) in enumerate(zip(cells, actual, strict=False), start=1):
        cut_ok = all(
            s == r or (s.endswith("…") and r.startswith(s[:-1].rstrip())) for s, r in zip(seen, real, strict=False)
        )
        if len(seen) != len(real) or not cut_ok:
            return f"row {number}: shown {' │ '.join(seen)}\n       query {' │ '.join(real)}"
    return ""


def query(database: Path, sql: str) -> tuple[list[str], list[tuple]]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        relation = con.sql(sql)
        return relation.columns, relation.fetchall()


def check_document(doc: Path, folder: Path) -> list[tuple[int, int, str, str, str]]:
    """Run a document's steps; return (first line, last line, command, expected, actual) for each output.

    For a `rows` block, `actual` is already the verdict: '' when the rows match, else why not."""
    session = Session(folder)
    results = []
    last_sql = ""
    for event in parse(doc):
        if isinstance(event, Step):
            src, dst = event.arg.split()
            shutil.copy(folder / src, folder / dst)
        elif isinstance(event, Region):
            results.append((event.line + 1, event.end - 1, event.command, event.text, session.run(event.command)))
        elif isinstance(event, Block):
            session.apply(event)
            if event.lang == "sql":
                last_sql = event.text
            if "rows" in event.directives:
                columns, rows = query(folder / event.directives["rows"], last_sql)
                verdict = rows_mismatch(event.text, columns, rows)
                results.append((event.line + 1, event.end - 1, f"rows: {last_sql.strip()}", "", verdict))
            elif "output" in event.directives:
                actual = session.run(event.directives["output"])
                results.append((event.line + 1, event.end - 1, event.directives["output"], event.text, actual))
            elif event.lang == "console":
                for command, expected, line in console_session(event):
                    results.append((line, line, f"$ {command}", expected, session.run(command)))
    return results


@pytest.mark.parametrize("doc", [d for d in DOCS if executable(d)], ids=lambda d: d.name)
def test_every_output_shown_in_the_docs_is_what_the_command_prints(doc, tmp_path):
    failures = []
    for line, _end, command, expected, actual in check_document(doc, tmp_path):
        if command.startswith("rows: "):
            if actual:
                failures.append(f"{doc.relative_to(ROOT)}:{line}: the rows of\n{command[6:]}\n{actual}")
            continue
        if not matches(expected, actual):
            diff = "\n".join(
                difflib.unified_diff(
                    normalize(expected).split("\n"), normalize(actual).split("\n"), "shown", "printed", lineterm=""
                )
            )
            failures.append(f"{doc.relative_to(ROOT)}:{line}: {command}\n{diff}")
    assert not failures, (
        "the docs show output the code no longer prints (update them with "
        f"`.venv/bin/python tests/test_docs.py --update {doc.relative_to(ROOT)}`):\n\n" + "\n\n".join(failures)
    )


def test_the_documents_that_claim_real_output_are_checked():
    checked = {d.name for d in DOCS if executable(d)}
    assert checked >= {"rule-format.md", "pull-requests.md", "warehouse.md"}


def test_a_changed_output_is_caught():
    assert matches("1 valid, 0 invalid\n", "1 valid, 0 invalid  \n")
    assert matches("a\n...\nz\n", "a\nb\nc\nz\n")
    assert not matches("2 valid, 0 invalid\n", "1 valid, 0 invalid\n")
    assert not matches("a\n...\nz\n", "a\nb\n")
    rows = [("cloudnine", 3, None), ("forge", 4, "long text")]
    assert rows_mismatch("│ cloudnine │ 3 │ NULL │\n…\n", ["org", "n", "x"], rows) == ""
    assert (
        rows_mismatch("│ org │ n │ x │\n│ cloudnine │ 3 │ NULL │\n│ forge │ 4 │ long … │\n", ["org", "n", "x"], rows)
        == ""
    )
    assert rows_mismatch("│ cloudnine │ 3 │ NULL │\n", ["org", "n", "x"], rows).startswith("1 rows shown")
    assert rows_mismatch("│ cloudnine │ 4 │ NULL │\n…\n", ["org", "n", "x"], rows).startswith("row 1:")


def update(doc: Path) -> None:
    """Rewrite the shown output of `doc` with what the commands print now (a console block keeps its `$ ` lines)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        results = check_document(doc, Path(tmp))
    lines = doc.read_text(encoding="utf-8").split("\n")
    blocks = {e.line: e for e in parse(doc) if isinstance(e, Block)}
    # Replace from the bottom up so earlier line numbers stay right.
    for first, last, command, _expected, actual in sorted(results, reverse=True):
        if command.startswith("rows: "):
            assert not actual, f"{doc.name}:{first}: rewrite these rows by hand: {actual}"
            continue
        if command.startswith("$ "):
            block = next(b for b in blocks.values() if b.line < first <= b.end)
            # A console command's output runs up to the next `$ ` line or the closing fence.
            stop = first  # 0-based index of the line after the `$ ` line
            while stop < block.end - 1 and not lines[stop].removeprefix(block.indent).startswith("$ "):
                stop += 1
            indent = block.indent
            lines[first:stop] = [indent + ln if ln else ln for ln in actual.rstrip("\n").split("\n") if actual]
        else:
            indent = next((b.indent for b in blocks.values() if b.line + 1 == first), "")
            lines[first - 1 : last] = [indent + ln if ln else ln for ln in actual.rstrip("\n").split("\n")]
    doc.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    assert sys.argv[1:2] == ["--update"] and sys.argv[2:], "usage: python tests/test_docs.py --update DOC.md..."
    for name in sys.argv[2:]:
        update(Path(name).resolve())
        print(f"updated {name}; review the diff")
