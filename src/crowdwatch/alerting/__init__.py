"""The alerting side: consume events, validate, route, store alerts, escalate (DESIGN 1, 5, 6)."""
