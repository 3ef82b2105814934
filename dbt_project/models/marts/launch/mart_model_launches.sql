-- Grain: one row per line of the models' append-only audit log (<home>/models/audit.jsonl), in order:
-- every promotion, approval request, approval, rejection, rollback and shadow start or stop, with who
-- did it, when, why, and the evidence it rested on (the launch impact or report, and that file's
-- SHA-256). A line the log could not read (a write torn by a killed process) is a row too, marked damaged.
{% if external_files_exist(env_var('TRUSTLAKE_LAKE_OPS') ~ '/model_launches/*.parquet') %}
select
    line as log_line,
    event_id,
    -- Written in UTC as YYYY-MM-DDTHH:MM:SS+00:00 (ml/launch/audit.py).
    cast(left("at", 19) as timestamp) as event_at,
    action,
    version as model_version,
    actor,
    reason,
    previous as previous_champion,
    rolled_back,
    risk_tier,
    report,
    report_sha256,
    coalesce(recovered, false) as recovered_late,
    damage is not null as is_damaged,
    damage,
    damaged_text
from {{ source('launch', 'model_launch_log') }}
{% else %}
select
    cast(null as bigint) as log_line, cast(null as varchar) as event_id, cast(null as timestamp) as event_at,
    cast(null as varchar) as action, cast(null as varchar) as model_version, cast(null as varchar) as actor,
    cast(null as varchar) as reason, cast(null as varchar) as previous_champion, cast(null as varchar) as rolled_back,
    cast(null as varchar) as risk_tier, cast(null as varchar) as report, cast(null as varchar) as report_sha256,
    cast(null as boolean) as recovered_late, cast(null as boolean) as is_damaged, cast(null as varchar) as damage,
    cast(null as varchar) as damaged_text
where false
{% endif %}
