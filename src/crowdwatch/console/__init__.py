"""Operator-facing views: the terminal live table (and, later, the web console)."""
