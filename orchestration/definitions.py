"""The trustlake code location: every asset, check, job, schedule, sensor and resource.

Importing this module does nothing but define `defs`: no file is written, no environment variable
is set and dbt is never run (tests/test_definitions.py proves it in a fresh process). The
definitions are built when Dagster loads the code location (`@dg.definitions`), from settings read
in orchestration/settings.py and the dbt manifest `trustlake prepare` parsed beforehand.
"""

from __future__ import annotations

import dagster as dg

from orchestration.settings import Settings

# Modules every run and step process needs: the multiprocess executor's forkserver imports them
# once and forks each step from it, instead of each step importing torch, dbt and Dagster afresh.
PRELOADED_MODULES = ["orchestration.definitions", "orchestration.asset_list"]


def build_definitions(settings: Settings) -> dg.Definitions:
    from assets.automation import automation_condition_for
    from assets.code_version import source_version
    from assets.ownership import owners_for
    from assets.resources import LakehouseResource, LaunchResource, MonitoringResource, TrainingResource
    from assets.warehouse_project import TrustlakeDbtCliResource
    from ml.lake import Lake
    from orchestration.asset_list import all_assets
    from orchestration.jobs import jobs
    from orchestration.partitions import daily_partitions
    from orchestration.ray_resource import ray_cluster
    from orchestration.schedules import schedules
    from orchestration.sensors.alerts import run_failure_alert_sensor
    from orchestration.sensors.automation import automation_sensor
    from orchestration.sensors.landing import landing_sensor_every
    from orchestration.sensors.retraining import retraining_sensor

    def catalogued(module: str):
        def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
            # Owners by group, automation and code versions in one place each (the dbt translator applied the
            # first two; dagster-dbt gives dbt models the checksum of their SQL as code version).
            return spec.replace_attributes(
                owners=spec.owners or owners_for(spec.group_name),
                automation_condition=spec.automation_condition or automation_condition_for(spec.key),
                code_version=spec.code_version or source_version(module),
            )

        return apply

    assets = [
        a.map_asset_specs(catalogued(defining_module(a))) if isinstance(a, dg.AssetsDefinition) else a
        for a in all_assets(daily_partitions, settings.gates, settings.monitoring, settings.launch)
    ]
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=[
            automation_sensor,
            landing_sensor_every(settings.landing_poll_seconds),
            retraining_sensor,
            run_failure_alert_sensor,
        ],
        executor=dg.multiprocess_executor.configured(
            {
                "max_concurrent": settings.max_concurrent_steps,
                "start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}},
            }
        ),
        resources={
            "lakehouse": LakehouseResource.for_platform(settings.home, settings.corpora, settings.simulator),
            "monitoring": MonitoringResource.from_thresholds(settings.monitoring),
            "launch": LaunchResource.from_bounds(settings.launch),
            "dbt": TrustlakeDbtCliResource.for_lake(Lake(settings.home)),
            "ray_cluster": ray_cluster(settings),
            "training": TrainingResource.for_runs(
                settings.lightgbm,
                settings.text_model,
                settings.text_profile,
                settings.text_model_training,
                settings.gates,
                settings.home / "ray",
            ),
            "io_manager": io_manager(settings),
        },
    )


def defining_module(assets_def) -> str:
    """The module that defines an asset's function (whose source decides its code version)."""
    fn = assets_def.op.compute_fn
    return (getattr(fn, "decorated_fn", None) or fn.fn).__module__


def io_manager(settings: Settings) -> dg.FilesystemIOManager:
    """Models, evaluations and training sets pass between assets as real inputs, stored under the home
    (also what `trustlake run` reads its summary from, without loading every asset module)."""
    return dg.FilesystemIOManager(base_dir=str(settings.dagster_home / "storage"))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
