"""The benchmarks' command lines: `--help` describes a benchmark and starts nothing; an unknown option is
refused before any work (a benchmark runs for minutes, and some ignored their arguments)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(f"benchmarks.{p.stem}" for p in (ROOT / "benchmarks").glob("bench_*.py"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", MODULES)
def test_help_describes_a_benchmark_and_an_unknown_option_is_refused(module):
    shown = run(module, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: python -m {module}")
    assert "==" not in shown.stdout and "targets:" not in shown.stdout  # nothing was measured
    refused = run(module, "--no-such-option")
    assert refused.returncode == 2
    assert "unrecognized arguments: --no-such-option" in refused.stderr
