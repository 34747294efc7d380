"""Safe YAML loading that remembers where every key and value came from (line, column)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kare_rules.errors import Problem, display_path

# A location inside a document: the keys and indexes from the root, e.g. ("profiles", "keep", "when").
DocPath = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: plain data plus the position of every node, keyed by its path."""

    path: str
    data: Any
    value_at: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    key_at: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

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


class _Loader(yaml.SafeLoader):
    """SafeLoader: constructs only plain data (no Python objects, no tags that run code)."""


def parse_text(text: str, path: str) -> Document:
    """Parse YAML text; syntax errors become problems rather than exceptions."""
    doc = Document(path=path, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            doc.problems.append(Problem(path, 1, 1, "the file is empty; it should start with 'format: kare/v1'"))
            return doc
        doc.data = _build(loader, node, (), doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "invalid YAML"
        doc.problems.append(
            Problem(path, line, col, f"YAML syntax error: {what}; check indentation, colons and quotes here")
        )
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(path, 1, 1, f"YAML error: {exc}"))
    finally:
        loader.dispose()
    return doc


def load_document(path: str | Path) -> Document:
    """Read and parse a YAML file; an unreadable or binary file becomes a problem, not a traceback."""
    shown = display_path(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return Document(shown, None, problems=[Problem(shown, 1, 1, f"cannot read the file: {exc.strerror}")])
    if b"\x00" in raw:
        return Document(shown, None, problems=[Problem(shown, 1, 1, "this is a binary file, not YAML text")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return Document(shown, None, problems=[Problem(shown, line, 1, "the file is not UTF-8 text; save it as UTF-8")])
    return parse_text(text, shown)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: _Loader, node: yaml.Node, here: DocPath, doc: Document) -> Any:
    doc.value_at.setdefault(here, _mark(node))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                line, col = _mark(key_node)
                doc.problems.append(Problem(doc.path, line, col, "a key must be a plain word, not a list or mapping"))
                continue
            if isinstance(key, bool):  # YAML 1.1 reads `yes`/`on` keys as booleans; keep the text
                key = key_node.value
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                line, col = _mark(key_node)
                doc.problems.append(
                    Problem(doc.path, line, col, f"duplicate key '{key}'; each key may appear once in a mapping")
                )
            child = (*here, key)
            doc.key_at[child] = _mark(key_node)
            out[key] = _build(loader, value_node, child, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*here, i), doc) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except ValueError:  # a date-shaped scalar that is not a calendar date, such as 2026-02-30
        line, col = _mark(node)
        doc.problems.append(Problem(doc.path, line, col, f"'{node.value}' is not a calendar date; write YYYY-MM-DD"))
        return node.value
