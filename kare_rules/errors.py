"""Problems found in rule files and data, collected into one report instead of raised one by one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a file: where it is and what to write instead."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        # A path holding a newline (a directory named 'acme\n') must not break the one-line format.
        path = self.path if self.path.isprintable() else self.path.encode("unicode_escape").decode("ascii")
        return f"{path}:{self.line}:{self.column}: {one_line(self.message)}"


def one_line(text: str) -> str:
    """`text` with each character that is not printable (a line break, a terminal control or a bidi
    override) written as its escape, e.g. \\n. Text from a rule file or the data is shown, never obeyed:
    in a CI log a line of its own starting with '::' is a workflow command (an annotation, a mask, a
    step output), and in a terminal an escape sequence rewrites the screen."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class KareError(Exception):
    """Base class for errors meant for people: the message is the whole story, never a traceback."""


class RuleFileError(KareError):
    """A rule (or overrides) file has one or more problems; all of them are in `problems`."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DataError(KareError):
    """Input data cannot be used at all (a missing column, an unreadable source)."""


class UsageError(KareError):
    """The command was called in a way that cannot work; exit code 2."""


def display_path(path: str | Path) -> str:
    """A path as a person would type it: relative to the working directory when it is inside it.

    Symbolic links are not followed: a message names the path as it was reached (rules/evil/kare.yaml),
    not where a link leads."""
    p = Path(path)
    try:
        return str(Path(os.path.abspath(p)).relative_to(os.path.abspath(Path.cwd())))
    except ValueError:
        return str(p)
