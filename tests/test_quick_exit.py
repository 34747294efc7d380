"""Processes that load kare (the CLI) or the Dagster definitions exit without Python's last full garbage
collection (kare_rules/quick_exit.py): at exit, the objects still alive are frozen."""

import subprocess
import sys
import textwrap

import pytest

CYCLE = """
class Cycle:
    def __del__(self):
        print("finalized", flush=True)

c = Cycle()
c.me = c  # only the collection at exit would finalize it
"""


@pytest.mark.parametrize(
    ("setup", "finalized"),
    [
        ("", True),  # plain Python collects the cycle at exit and runs its finalizer
        ("from kare_rules.quick_exit import skip_final_collection; skip_final_collection()", False),
        ("import kare_rules.cli; kare_rules.cli.main([])", False),  # every kare command
        ("import pipelines", False),  # every Dagster process that loads the definitions
    ],
)
def test_the_collection_at_exit_is_skipped(setup: str, finalized: bool) -> None:
    code = textwrap.dedent(setup) + "\n" + CYCLE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert ("finalized" in done.stdout) is finalized, done.stderr


def test_installed_once() -> None:
    code = (
        "import atexit\n"
        "from kare_rules.quick_exit import skip_final_collection\n"
        "before = atexit._ncallbacks()\n"
        "skip_final_collection(); skip_final_collection()\n"
        "print(atexit._ncallbacks() - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
