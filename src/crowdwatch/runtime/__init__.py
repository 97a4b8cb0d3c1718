"""Composition: builds the pipeline from validated config and runs it (embedded or as roles)."""
