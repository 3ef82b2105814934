"""Sensors: what starts a run without a person (one module each)."""
