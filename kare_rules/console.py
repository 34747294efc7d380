"""The `kare` command's entry point: imports the command line, and a Ctrl-C while it loads is no traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from kare_rules.cli import main as cli_main
    except KeyboardInterrupt:  # pressed within the first second, while Polars, DuckDB and the rest load
        print("kare: interrupted before it started; nothing was done", file=sys.stderr)
        return 130
    return cli_main()
