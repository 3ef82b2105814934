{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='content_id',
    on_schema_change='append_new_columns',
) }}
-- One row per content item with what happened to it. Incremental by creation day: a run
-- rebuilds its partition window plus the late-arrival lookback (reports, decisions and
-- appeals keep arriving for days after a post).
with content as (
    select * from {{ ref('stg_platform__content') }}
    {% if is_incremental() %}
    where created_date between {{ window_start() }} and {{ window_end() }}
    {% endif %}
),
reports as (
    select content_id, count(*) as reports, count(distinct reporter_id) as distinct_reporters,
           min(reported_at) as first_reported_at
    from {{ ref('stg_platform__reports') }}
    group by content_id
),
top_reason as (
    -- The most reported policy; ties go to the alphabetically first, so rebuilds agree.
    select content_id, reported_policy as top_reported_policy
    from {{ ref('stg_platform__reports') }}
    group by content_id, reported_policy
    qualify row_number() over (partition by content_id order by count(*) desc, reported_policy) = 1
)
select
    c.content_id,
    c.author_id,
    c.created_at,
    c.created_date,
    c.surface,
    c.language,
    c.text_hash,
    c.eval_bucket,
    c.has_link,
    c.has_phone,
    c.media_type,
    c.media_sha256,
    c.media_path,
    coalesce(r.reports, 0) as reports,
    coalesce(r.distinct_reporters, 0) as distinct_reporters,
    r.first_reported_at,
    t.top_reported_policy,
    l.decision_id is not null as was_reviewed,
    l.decided_policy,
    l.action,
    l.decided_at,
    l.appeal_id is not null as was_appealed,
    l.appeal_outcome,
    l.gold_policy,
    l.resolved_policy,
    l.label_source
from content c
left join reports r using (content_id)
left join top_reason t using (content_id)
left join {{ ref('int_resolved_content_labels') }} l using (content_id)
