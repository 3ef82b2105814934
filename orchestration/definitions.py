"""The trustlake code location: every asset, check, job, schedule and resource."""

import dagster as dg
from dagster_dbt import DbtCliResource

from ml.lake import Lake
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse_project import DBT_EXECUTABLE, dbt_project, export_dbt_environment, prepare_manifest

settings = Settings.from_env()
prepare_environment(settings)
export_dbt_environment(Lake(settings.home))
if not dbt_project.manifest_path.exists():
    # First start without `make`/`trustlake prepare`: parse now, before any run starts.
    prepare_manifest(Lake(settings.home))

from assets.raw import raw_platform_tables  # noqa: E402  (needs the manifest above)
from assets.warehouse import published_marts, warehouse_models  # noqa: E402
from orchestration.jobs import ingest_job  # noqa: E402
from orchestration.resources import LakehouseResource  # noqa: E402
from orchestration.schedules import daily_ingest_schedule  # noqa: E402

defs = dg.Definitions(
    assets=[raw_platform_tables, warehouse_models, published_marts],
    jobs=[ingest_job],
    schedules=[daily_ingest_schedule],
    resources={
        "lakehouse": LakehouseResource.from_settings(settings),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
    },
)
