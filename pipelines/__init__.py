"""The Dagster layer: a thin asset graph over kare_rules, partitioned by organization."""

import gc
import sys

import dagster  # noqa: F401 (imported before the freeze below)

# Dagster's import leaves some hundred thousand objects that live as long as the process. Frozen, the
# garbage collector no longer walks them in every full collection and at exit, where they cost 0.4 s
# of each run's process. Not when DuckDB is already imported (a notebook, the tests): its bindings
# must see their objects freed at exit, or they print "leaked N instances". Imports after this point
# (kare_rules, Polars, DuckDB) are not frozen.
if "duckdb" not in sys.modules:
    gc.freeze()
