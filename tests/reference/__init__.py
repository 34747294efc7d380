"""The full-history engine kare-rules ran before incremental runs, kept as the property tests reference."""
