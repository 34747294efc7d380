"""The Dagster layer: a thin asset graph over kare_rules, partitioned by organization."""
