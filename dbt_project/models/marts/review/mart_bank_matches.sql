-- Grain: one row per match day, bank, the entry's policy, match kind (pdq, text) and entry source
-- (confirmed_removal, import). What the hash banks caught each day (the bank_matches asset: each day's
-- posts matched against the banks as they stood that day) and how often QA gold agrees: of the matched
-- items QA audited, the share it found violating (qa_precision) and the share it put under the bank's
-- own policy. An item counts once per row however many entries of the bank it matched.
{% set pattern = env_var('TRUSTLAKE_LAKE_SCORES') ~ '/bank_matches/date=*/*.parquet' %}
{% if external_files_exist(pattern) %}
with judged as (
    select
        cast(m.date as date) as match_date,
        m.*,
        c.gold_policy
    from {{ source('scoring', 'bank_matches') }} m
    left join {{ ref('fct_content') }} c using (content_id)
)
select
    match_date,
    bank,
    policy,
    kind,
    source,
    count(*) as matches,
    count(distinct content_id) as items_matched,
    count(distinct content_id) filter (where closest) as items_decided_by_it,
    min(distance) as min_distance,
    avg(distance) as mean_distance,
    avg(jaccard) as mean_jaccard,
    count(distinct content_id) filter (where gold_policy is not null) as qa_audited,
    count(distinct content_id) filter (where gold_policy is not null and gold_policy <> 'benign') as qa_violating,
    count(distinct content_id) filter (where gold_policy = policy) as qa_same_policy,
    count(distinct content_id) filter (where gold_policy is not null and gold_policy <> 'benign')
        / nullif(count(distinct content_id) filter (where gold_policy is not null), 0)::double as qa_precision
from judged
group by all
{% else %}
select
    cast(null as date) as match_date, cast(null as varchar) as bank, cast(null as varchar) as policy,
    cast(null as varchar) as kind, cast(null as varchar) as source, cast(null as bigint) as matches,
    cast(null as bigint) as items_matched, cast(null as bigint) as items_decided_by_it,
    cast(null as integer) as min_distance, cast(null as double) as mean_distance, cast(null as double) as mean_jaccard,
    cast(null as bigint) as qa_audited, cast(null as bigint) as qa_violating, cast(null as bigint) as qa_same_policy,
    cast(null as double) as qa_precision
where false
{% endif %}
