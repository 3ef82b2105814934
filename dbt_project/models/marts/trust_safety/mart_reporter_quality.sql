-- Grain: one row per reporter. Precision = share of their reports on reviewed content
-- that led to enforcement. A brigade report is one of five or more reports on one item
-- within an hour on content that was judged benign: many reports, no violation.
with reports as (
    select r.*, count(*) over (partition by r.content_id order by r.reported_at
               range between interval 1 hour preceding and interval 1 hour following) as reports_within_hour
    from {{ ref('stg_platform__reports') }} r
),
judged as (
    select r.*, c.was_reviewed, c.action, c.resolved_policy
    from reports r
    join {{ ref('fct_content') }} c using (content_id)
)
select
    reporter_id,
    count(*) as reports_filed,
    count(distinct content_id) as distinct_content_reported,
    count(*) filter (where was_reviewed) as reports_reviewed,
    count(*) filter (where action in ('remove', 'restrict')) as reports_actioned,
    count(*) filter (where action in ('remove', 'restrict')) / nullif(count(*) filter (where was_reviewed), 0)::double as precision,
    count(*) filter (where reports_within_hour >= 5 and resolved_policy = 'benign') as brigade_reports,
    count(*) filter (where reports_within_hour >= 5 and resolved_policy = 'benign') / count(*)::double as brigade_share
from judged
group by reporter_id
