{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='decision_id',
) }}
-- One row per moderator decision, with the content, review latency, the appeal and the
-- QA verdict when there is one. Incremental by decision day with the late-arrival lookback.
with decisions as (
    select * from {{ ref('stg_platform__decisions') }}
    {% if is_incremental() %}
    where decided_date between {{ window_start() }} and {{ window_end() }}
    {% endif %}
),
first_reports as (
    select content_id, min(reported_at) as first_reported_at, count(*) as reports
    from {{ ref('stg_platform__reports') }}
    group by content_id
),
appeals as (
    select * from {{ ref('stg_platform__appeals') }}
    qualify row_number() over (partition by decision_id order by resolved_at desc, appeal_id) = 1
)
select
    d.decision_id,
    d.content_id,
    d.moderator_id,
    c.author_id,
    c.surface,
    c.created_at,
    d.review_reason,
    d.decided_policy,
    d.action,
    d.is_enforcement,
    d.decided_at,
    d.decided_date,
    coalesce(f.reports, 0) as reports,
    coalesce(f.first_reported_at, c.created_at) as queued_at,
    date_diff('second', coalesce(f.first_reported_at, c.created_at), d.decided_at) / 3600.0 as review_latency_hours,
    a.appeal_id is not null as was_appealed,
    a.appealed_at,
    a.resolved_at as appeal_resolved_at,
    a.outcome as appeal_outcome,
    coalesce(a.is_overturned, false) as was_overturned,
    q.gold_policy,
    q.agrees_with_gold
from decisions d
join {{ ref('stg_platform__content') }} c using (content_id)
left join first_reports f using (content_id)
left join appeals a on a.decision_id = d.decision_id
left join {{ ref('int_moderator_qa_agreement') }} q on q.decision_id = d.decision_id
