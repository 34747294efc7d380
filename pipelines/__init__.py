"""The Dagster layer: a thin asset graph over kare_rules, partitioned by organization."""

from kare_rules.quick_exit import skip_final_collection

# Every process that loads these definitions (a run's worker, the code server, `dg check defs`) ends faster.
skip_final_collection()
