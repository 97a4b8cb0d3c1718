"""Event bus: a small Protocol (base) with memory and Kafka implementations, and a durable
SQLite spool (spool.SpoolingBus) that keeps messages while the broker is unreachable."""
