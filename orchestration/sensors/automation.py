"""The sensor that acts on the assets' automation conditions (assets/automation.py)."""

import dagster as dg

# Evaluates every asset's condition (assets/automation.py's, and any an asset module gives its own) once a
# minute while the daemon runs (`make ui`). Running by default: it only acts on real changes.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Requests runs for assets whose automation condition is true (assets/automation.py).",
)
