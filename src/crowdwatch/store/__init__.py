"""Alert store: a small Protocol with a memory implementation (and Redis later)."""
