"""Sensors: what starts a run when something outside Dagster happens."""
