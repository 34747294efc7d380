"""The `kare` command line: validate, test, init, categorize, explain, compile, diff, run. Errors for people.

One module per command group (rules, data, run); `parser` declares every option. Never imports pipelines.
"""

from __future__ import annotations

import argparse
import os
import sys

from kare_rules.cli import data, rules, run  # noqa: F401  (each registers its commands)
from kare_rules.cli.common import COMMANDS, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_USAGE, err
from kare_rules.cli.parser import build_parser
from kare_rules.errors import KareError, RuleFileError, UsageError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _misspelt_options(parser, argv)  # before argparse says "--output is required" for a --ouput given
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unknown_arguments(parser.get_default("subparsers").get(args.command, parser), unknown)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except RuleFileError as exc:
        for p in exc.problems:
            err(str(p))
        err(f"{len(exc.problems)} problem(s) in the rule file; fix them and run again (kare validate shows them)")
        return EXIT_FAIL
    except UsageError as exc:
        err(f"kare {args.command}: {exc}")
        return EXIT_USAGE
    except KareError as exc:
        err(f"kare {args.command}: {exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (kare compile ... | head): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a file to write where it cannot be (--output, --out in a folder that is read-only)
        where = f"{exc.filename}: " if exc.filename else ""
        err(f"kare {args.command}: {where}{exc.strerror or exc}; check the path, and that its folder can be written")
        return EXIT_FAIL


def _misspelt_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """A --long option the command does not have (nor begins, as argparse takes --out for --output)."""
    import difflib

    commands = parser.get_default("subparsers")
    command = next((a for a in argv if not a.startswith("-")), None)
    sub = commands.get(command)
    if sub is None:
        near = difflib.get_close_matches(command, list(commands), n=1) if command else []
        if near:  # argparse lists all eleven commands; the one meant comes first
            parser.error(f"unknown command {command!r}; did you mean {near[0]}? (kare --help lists them)")
        return
    known = _long_options(sub)
    for token in argv[argv.index(command) + 1 :]:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name.startswith("--") and len(name) > 2 and not any(o.startswith(name) for o in known):
            _unknown_arguments(sub, [name])


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings if o.startswith("--")]


def _unknown_arguments(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """A misspelt option, said by the command it was given to (its usage, 'kare run: error: ...') with the
    nearest option it has, not by the top-level parser that knows no command's options; exits 2."""
    import difflib

    given = next((u.split("=", 1)[0] for u in unknown if u.startswith("-")), "")
    near = difflib.get_close_matches(given, _long_options(parser), n=1) if given else []
    hint = f"; did you mean {near[0]}?" if near else f"; see {parser.prog} --help"
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
