-- Grain: one row per monitored day, monitor, metric and subject. Every measure the monitoring assets
-- computed for the champion, in one long table: drift (PSI of each score and feature column), live
-- precision of auto-actions and QA recall, predicted against QA-estimated prevalence. `status` is what
-- the asset checks judged with the thresholds of the run (ok, warn, fail, insufficient evidence); rows
-- that are context rather than a judgement (counts, predicted prevalence) have none.
{% set root = env_var('TRUSTLAKE_LAKE_MONITORING') %}
{% set monitors = ['model_drift', 'live_precision', 'prevalence_gap'] %}
with
{% for monitor in monitors %}
{{ monitor }} as (
    {% if external_files_exist(root ~ '/' ~ monitor ~ '/date=*/*.parquet') %}
    select '{{ monitor }}' as monitor, cast(date as date) as monitoring_date, champion, metric, subject,
           value, expected, ci_low, ci_high, n, status
    from {{ source('monitoring', monitor) }}
    {% else %}
    select cast(null as varchar) as monitor, cast(null as date) as monitoring_date, cast(null as varchar) as champion,
           cast(null as varchar) as metric, cast(null as varchar) as subject, cast(null as double) as value,
           cast(null as double) as expected, cast(null as double) as ci_low, cast(null as double) as ci_high,
           cast(null as bigint) as n, cast(null as varchar) as status
    where false
    {% endif %}
){% if not loop.last %},{% endif %}
{% endfor %}
select
    monitoring_date,
    monitor,
    metric,
    subject,
    champion as model_version,
    value,
    expected,
    ci_low,
    ci_high,
    n as sample_size,
    status,
    coalesce(status in ('warn', 'fail'), false) as is_alert
from (
    {% for monitor in monitors %}
    select * from {{ monitor }}{% if not loop.last %} union all by name{% endif %}
    {% endfor %}
)
