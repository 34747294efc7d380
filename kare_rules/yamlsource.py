"""Safe YAML loading that remembers where every key and value came from (line, column)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kare_rules.errors import Problem, display_path, one_line

# A location inside a document: the keys and indexes from the root, e.g. ("profiles", "keep", "when").
DocPath = tuple[str | int, ...]

# Limits that keep a hostile file cheap to refuse (docs/rule-format.md, "Limits"). A real rule file is a
# few kilobytes and a few levels deep; these leave a wide margin and still bound time and memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NESTING = 200


@dataclass
class Document:
    """A parsed YAML file: plain data plus the position of every node, keyed by its path."""

    path: str
    data: Any
    value_at: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    key_at: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    text: str = ""  # the text parsed, for a caller that needs a value as written

    def where(self, doc_path: DocPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column of a path; the nearest enclosing node when the path itself is absent."""
        table = self.key_at if key else self.value_at
        p = tuple(doc_path)
        while p:
            if p in table:
                return table[p]
            if p in self.value_at:
                return self.value_at[p]
            p = p[:-1]
        return self.value_at.get((), (1, 1))

    def problem(self, doc_path: DocPath, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(doc_path, key=key)
        return Problem(self.path, line, col, message)


# libyaml parses many times faster than the pure-Python parser; both give the same events and marks.
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAP_TAG, _SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_MERGE_TAG, _STR_TAG = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:str"
# YAML 1.1 reads a plain `=` as its 'value' type, which no loader constructs; YAML 1.2 (and the editor's
# YAML support) reads it as text, as here, so `{n: {=: 5}}` gets the operator to write instead.
_VALUE_TAG = "tag:yaml.org,2002:value"
# Bytes (!!binary) are no value of any column, title or name: refused as a tag, not read as "b'...'".
_BINARY_TAG = "tag:yaml.org,2002:binary"
_NO_KEY, _SKIP = object(), object()  # a mapping waiting for its next key; a value whose key was refused


class _Stop(Exception):
    """The document cannot be read on: the problem is recorded, nothing more is parsed."""


RULE_FILE_START = "it should start with 'format: kare/v1'"  # what an empty rule file lacks


def parse_text(text: str, path: str, empty: str = RULE_FILE_START) -> Document:
    """Parse YAML text; syntax errors become problems rather than exceptions. `empty` says what an empty
    file should hold (a rule file's first line by default; a test or overrides file holds something else).

    The document is built from the parser's events in one loop with an explicit stack, so its cost
    follows the size of the text: anchors and aliases (which could expand a small file into billions of
    nodes) are refused, and so is nesting deeper than MAX_NESTING (which would exhaust the stack).
    """
    doc = Document(path=path, data=None, text=text)
    if len(text) > MAX_FILE_BYTES:
        doc.problems.append(Problem(path, 1, 1, _too_big(len(text))))
        return doc
    try:
        loader = _Loader(text)  # the pure-Python reader checks the characters here, libyaml while parsing
    except yaml.reader.ReaderError as exc:
        doc.problems.append(_unreadable_character(exc, text, path))
        return doc
    except UnicodeError:
        doc.problems.append(Problem(path, 1, 1, "the text is not valid Unicode; save the file as UTF-8"))
        return doc
    try:
        _Builder(loader, doc, f"the file is empty; {empty}").run()
    except _Stop:
        doc.data = None
    except yaml.reader.ReaderError as exc:
        doc.data = None
        doc.problems.append(_unreadable_character(exc, text, path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "invalid YAML"
        doc.data = None
        fix = _unclosed(exc, text) or _misaligned(exc, text) or "check indentation, colons and quotes here"
        if mark and _tab_at(text, mark.line, mark.column):
            # PyYAML names a tab only at the start of a line ("found character that cannot start any
            # token" inside a mapping); the tab is what to fix.
            fix = "YAML indents with spaces, not tabs: replace the tab with spaces"
        doc.problems.append(Problem(path, line, col, f"YAML syntax error: {what}; {fix}"))
    except yaml.YAMLError as exc:
        doc.data = None
        doc.problems.append(Problem(path, 1, 1, f"YAML error: {exc}"))
    finally:
        loader.dispose()
    return doc


def _unreadable_character(exc: yaml.reader.ReaderError, text: str, path: str) -> Problem:
    """A character YAML does not allow in its text (a control character pasted from a spreadsheet or a
    terminal, DEL, U+FFFE), located at its line and column: the reader names only an offset (in bytes, for
    libyaml), which reached the author as 'position 1059' at line 1."""
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    at = text.find(chr(code))  # the first character that is not allowed is the first of its kind
    line, column = (text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)) if at >= 0 else (1, 1)
    return Problem(
        path,
        line,
        column,
        f"this line holds the character U+{code:04X} ({one_line(chr(code))}), which YAML does not allow in a file; "
        f"remove it, or write it as \\u{code:04x} inside double quotes",
    )


def _unclosed(exc: yaml.MarkedYAMLError, text: str) -> str | None:
    """For an error inside a `{...}` or `[...]` opened on an earlier line, where it was opened: the parser
    stops only at the next line that cannot continue it (a forgotten `}` is reported a line or more later,
    on a line with nothing wrong). When a ' #' in between started a comment (`title: Call #2`), that is what
    cut the line short."""
    context, start, problem = exc.context or "", exc.context_mark, exc.problem_mark
    if not (start and problem and start.line < problem.line and context.startswith("while parsing a flow")):
        return None
    pair = "{}" if "mapping" in context else "[]"
    lines = text.splitlines()
    for number in range(start.line, min(problem.line, len(lines))):
        column = _comment_at(lines[number], start.column if number == start.line else 0)
        # Only a comment that cut off a closing bracket is the cause: a comment may end a line inside {...}.
        if column is not None and pair[1] in lines[number][column:]:
            return (
                f"the '#' at line {number + 1}, column {column + 1} starts a comment, so the rest of that line, "
                f"with its '{pair[1]}', is not read and the '{pair[0]}' at line {start.line + 1}, column "
                f"{start.column + 1} is not closed: quote the text holding '#', e.g. title: \"Call #2\""
            )
    return (
        f"the '{pair[0]}' at line {start.line + 1}, column {start.column + 1} is not closed before here: add its "
        f"'{pair[1]}', or quote text holding ': ' or ','"
    )


def _misaligned(exc: yaml.MarkedYAMLError, text: str) -> str | None:
    """For a line of a block that starts in another column than the line above it: which line is off is
    for the author to say (`when:` indented one space too many under `keep:`, or this line one too few),
    so both columns are named. The parser stops at the line that no longer fits, often the right one."""
    problem = exc.problem_mark
    if not (problem and (exc.context or "").startswith("while parsing a block")):
        return None
    lines = text.splitlines()
    if problem.line >= len(lines) or lines[problem.line][: problem.column].strip():
        return None  # the error is inside the line, not at its start
    above = next(
        (n for n in range(problem.line - 1, -1, -1) if lines[n].strip() and not lines[n].lstrip().startswith("#")),
        None,
    )
    if above is None:
        return None
    column = len(lines[above]) - len(lines[above].lstrip(" "))
    if column == problem.column:
        return None
    return (
        f"this line starts in column {problem.column + 1} and line {above + 1} above it in column {column + 1}: "
        "the keys of one mapping (and the '-' of one list) start in the same column; indent the one that is off "
        "with spaces"
    )


def _comment_at(line: str, begin: int) -> int | None:
    """The column of a '#' that starts a comment in `line` (after a space, outside quotes), from `begin`.
    A quote opens a quoted value only where a value starts, so the apostrophe of a plain Don't does not."""
    quote = None
    for i in range(begin, len(line)):
        char, before = line[i], line[i - 1] if i else " "
        if quote:
            if char == quote and not (quote == '"' and before == "\\"):
                quote = None
        elif char in "'\"" and before in " \t{[,:":
            quote = char
        elif char == "#" and before in " \t":
            return i
    return None


def _tab_at(text: str, line: int, column: int) -> bool:
    """Whether the 0-based (line, column) of a syntax error is a tab, or lies in a line's indentation that
    holds one."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return False
    here = lines[line]
    indentation = here[: len(here) - len(here.lstrip(" \t"))]
    return here[column : column + 1] == "\t" or "\t" in indentation[: column + 1]


class _Frame:
    __slots__ = ("container", "key", "path")

    def __init__(self, container: Any, path: DocPath):
        self.container = container
        self.path = path
        self.key: Any = _NO_KEY


class _Builder:
    """Plain data and positions from a stream of YAML events."""

    def __init__(self, loader: Any, doc: Document, empty: str):
        self.loader = loader
        self.doc = doc
        self.empty = empty  # the problem of an empty document
        self.stack: list[_Frame | None] = []  # None: inside a node that is being skipped
        self.refused = False  # a problem that leaves no usable data, found while parsing on

    def fail(self, mark: Any, message: str) -> None:
        self.doc.problems.append(Problem(self.doc.path, mark.line + 1, mark.column + 1, message))

    def run(self) -> None:
        ev = self.loader
        ev.get_event()  # StreamStart
        if ev.check_event(yaml.StreamEndEvent):
            self.doc.problems.append(Problem(self.doc.path, 1, 1, self.empty))
            raise _Stop
        ev.get_event()  # DocumentStart
        root = _Frame([], ())  # a one-item list holding the document's node
        self.stack.append(root)
        while not ev.check_event(yaml.DocumentEndEvent):
            self.event(ev.get_event())
        ev.get_event()
        if not ev.check_event(yaml.StreamEndEvent):
            self.fail(ev.peek_event().start_mark, "a rule file holds one YAML document; remove the second '---'")
            raise _Stop
        if self.refused:
            raise _Stop
        self.doc.data = root.container[0] if root.container else None
        if self.doc.data is None and not self.doc.problems:  # `---` alone, or `null`
            self.doc.problems.append(Problem(self.doc.path, 1, 1, self.empty))

    def event(self, e: Any) -> None:
        if isinstance(e, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self.stack.pop()
            return
        anchor = getattr(e, "anchor", None)
        if anchor is not None:  # an alias event's anchor is the name it refers to
            sign = "*" if isinstance(e, yaml.AliasEvent) else "&"
            self.fail(
                e.start_mark,
                f"YAML anchors and aliases ({sign}{anchor}) are not allowed in rule files; write the value out in full",
            )
            raise _Stop
        if isinstance(e, yaml.ScalarEvent):
            self.place(e, self.scalar(e))
            return
        # The start of a mapping or sequence.
        if len(self.stack) > MAX_NESTING:
            self.fail(
                e.start_mark,
                f"the YAML is nested more than {MAX_NESTING} levels deep here; a rule file needs far fewer: "
                "name parts of a deep condition as traits",
            )
            raise _Stop
        is_map = isinstance(e, yaml.MappingStartEvent)
        if e.tag not in (None, "!", _MAP_TAG if is_map else _SEQ_TAG):
            self.fail(e.start_mark, f"the YAML tag {e.tag!r} is not used in rule files; remove it")
            self.refused = True
        container: Any = {} if is_map else []
        path = self.place(e, container)
        self.stack.append(None if path is None else _Frame(container, path))

    def place(self, e: Any, value: Any) -> DocPath | None:
        """Put a finished value (or a new, still empty container) where the stack says; its path, or
        None when it is being skipped."""
        top = self.stack[-1]
        if top is None:
            return None
        mark = (e.start_mark.line + 1, e.start_mark.column + 1)
        container = top.container
        if isinstance(container, list):
            here = (*top.path, len(container)) if top.path or self.stack[0] is not top else ()
            container.append(value)
            self.doc.value_at.setdefault(here, mark)
            return here
        if top.key is _NO_KEY:  # this node is a key
            top.key = self.key(e, value, top)
            return None if not isinstance(e, yaml.ScalarEvent) else ()
        key, top.key = top.key, _NO_KEY
        if key is _SKIP:
            return None
        here = (*top.path, key)
        container[key] = value
        self.doc.value_at.setdefault(here, mark)
        return here

    def key(self, e: Any, value: Any, top: _Frame) -> Any:
        scalar = isinstance(e, yaml.ScalarEvent)
        if scalar and e.tag is None and not isinstance(value, str | int | float | bool):
            value = e.value  # `null:`, `~:` or `2026-01-01:` as written: the checks below name the text
        if not scalar or not isinstance(value, str | int | float | bool):
            self.fail(e.start_mark, "a key must be a plain word" + ("" if scalar else ", not a list or mapping"))
            return _SKIP
        if isinstance(value, bool):  # YAML 1.1 reads `yes`/`on` keys as booleans; keep the text
            value = e.value
        key = value if isinstance(value, str) else str(value)
        if key in top.container:
            self.fail(e.start_mark, f"duplicate key '{key}'; each key may appear once in a mapping")
        self.doc.key_at[(*top.path, key)] = (e.start_mark.line + 1, e.start_mark.column + 1)
        return key

    def scalar(self, e: Any) -> Any:
        loader = self.loader
        tag = e.tag
        if tag is None or tag == "!":
            tag = loader.resolve(yaml.ScalarNode, e.value, e.implicit)
        if tag == _MERGE_TAG:  # `<<` merges what an alias names; without aliases it is just a key
            return e.value
        if tag == _VALUE_TAG and e.tag is None:
            return e.value
        if tag == _STR_TAG and e.value.isascii():  # most scalars: plain text needs no constructor
            return e.value
        if tag not in loader.yaml_constructors or tag == _BINARY_TAG:  # !custom, !!python/object...: never constructed
            self.fail(e.start_mark, f"the YAML tag {e.tag!r} is not used in rule files; remove it")
            self.refused = True
            return None
        node = yaml.ScalarNode(tag, e.value, e.start_mark, e.end_mark, style=e.style)
        try:
            value = loader.construct_object(node, deep=True)
        except ValueError:  # a date-shaped scalar that is not a calendar date, such as 2026-02-30
            shown = e.value if len(e.value) <= 40 else e.value[:40] + "…"
            what = (
                "is not a calendar date; write YYYY-MM-DD"
                if tag.endswith(":timestamp")
                else "cannot be read as a number; quote it if it is text"
            )
            self.fail(e.start_mark, f"'{shown}' {what}")
            value = e.value
        finally:
            loader.constructed_objects.pop(node, None)
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                self.fail(
                    e.start_mark,
                    f"this text holds {exc.object[exc.start : exc.end]!r}, a lone surrogate that is not a "
                    "character; remove the \\u escape or write the character itself",
                )
                value = value.encode("utf-8", "replace").decode("utf-8")
        return value


def _too_big(size: int) -> str:
    return (
        f"the file has {size:,} bytes, over the limit of {MAX_FILE_BYTES // (1024 * 1024)} MiB "
        f"({MAX_FILE_BYTES:,} bytes) for rule, test and overrides files; split it, or move long lists of "
        "values into the data"
    )


def load_document(path: str | Path, empty: str = RULE_FILE_START) -> Document:
    """Read and parse a YAML file; an unreadable, binary, special or oversized file becomes a problem,
    not a traceback, a hang or a read of gigabytes. `empty`: what an empty file should hold (`parse_text`)."""
    shown = display_path(path)
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except RefusedFile as exc:
        return Document(shown, None, problems=[Problem(shown, 1, 1, str(exc))])
    except OSError as exc:
        return Document(shown, None, problems=[Problem(shown, 1, 1, f"cannot read the file: {exc.strerror}")])
    if b"\x00" in raw:
        return Document(shown, None, problems=[Problem(shown, 1, 1, "this is a binary file, not YAML text")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return Document(shown, None, problems=[Problem(shown, line, 1, "the file is not UTF-8 text; save it as UTF-8")])
    return parse_text(text, shown, empty)


class RefusedFile(Exception):
    """A file that is not read: a directory, FIFO, device or socket, or one over the size limit."""


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; RefusedFile for anything else.

    Checked with stat before it is opened (opening some devices has effects of its own), opened without
    blocking (a FIFO swapped in meanwhile would otherwise wait for a writer) and checked again with
    fstat before a byte is read, so /dev/zero, a FIFO or a directory is refused at once; at most
    limit + 1 bytes are ever read, even if the file grows meanwhile.
    """
    _check_regular(os.stat(path), limit)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd), limit)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise RefusedFile(_too_big(total))
        return b"".join(chunks)
    finally:
        os.close(fd)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def _check_regular(info: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise RefusedFile(f"this is {kind}, not a regular file; give the YAML file itself")
    if info.st_size > limit:
        raise RefusedFile(_too_big(info.st_size))
