"""Dagster wiring for trustlake: settings, resources, definitions, jobs, schedules and the CLI."""
