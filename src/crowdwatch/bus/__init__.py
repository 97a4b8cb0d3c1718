"""Event bus: a small Protocol with a memory implementation (and Kafka later)."""
