"""The `kare` command line: validate, test, init, categorize, explain, compile, diff, run. Errors for people.

One module per command group (rules, data, run); `parser` declares every option. Never imports pipelines.
"""

from __future__ import annotations

import os
import sys

from kare_rules.cli import data, rules, run  # noqa: F401  (each registers its commands)
from kare_rules.cli.common import COMMANDS, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_USAGE, err
from kare_rules.cli.parser import build_parser
from kare_rules.errors import KareError, RuleFileError, UsageError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
