-- Grain: one row per failed run of any trustlake job, from the run failure sensor's append-only log
-- (one Parquet file per run under <home>/lake/ops/ops_alerts/). A run recorded twice keeps one row.
{% if external_files_exist(env_var('TRUSTLAKE_LAKE_OPS') ~ '/ops_alerts/*.parquet') %}
select alert_id, run_id, job_name, failed_steps, failed_assets, error, failed_at, partition_range
from {{ source('ops', 'ops_alert_log') }}
qualify row_number() over (partition by run_id order by failed_at desc) = 1
{% else %}
select cast(null as varchar) as alert_id, cast(null as varchar) as run_id, cast(null as varchar) as job_name,
       cast(null as varchar) as failed_steps, cast(null as varchar) as failed_assets, cast(null as varchar) as error,
       cast(null as timestamp) as failed_at, cast(null as varchar) as partition_range
where false
{% endif %}
