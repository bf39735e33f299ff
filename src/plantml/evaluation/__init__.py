"""Metrics overall and per operating condition, and readable result tables."""
