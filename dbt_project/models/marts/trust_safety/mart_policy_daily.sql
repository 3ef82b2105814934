-- Grain: one row per day, policy and surface. Volume of content created on the surface
-- that day, reports filed for the policy, and decisions taken under it.
with days_surfaces as (
    select created_date as activity_date, surface, count(*) as content_created
    from {{ ref('fct_content') }} group by all
),
policies as (
    select unnest([{{ sql_list(var('policies')) }}]) as policy
),
reports as (
    select r.reported_date as activity_date, r.reported_policy as policy, c.surface,
           count(*) as reports, count(distinct r.content_id) as reported_content
    from {{ ref('stg_platform__reports') }} r
    join {{ ref('stg_platform__content') }} c using (content_id)
    group by all
),
decisions as (
    select decided_date as activity_date, decided_policy as policy, surface,
           count(*) as decisions,
           count(*) filter (where action = 'remove') as removals,
           count(*) filter (where action = 'restrict') as restrictions,
           count(*) filter (where was_overturned) as overturned
    from {{ ref('fct_moderation_actions') }} group by all
)
select
    ds.activity_date,
    p.policy,
    ds.surface,
    ds.content_created,
    coalesce(r.reports, 0) as reports,
    coalesce(r.reported_content, 0) as reported_content,
    coalesce(d.decisions, 0) as decisions,
    coalesce(d.removals, 0) as removals,
    coalesce(d.restrictions, 0) as restrictions,
    coalesce(d.overturned, 0) as overturned
from days_surfaces ds
cross join policies p
left join reports r using (activity_date, policy, surface)
left join decisions d using (activity_date, policy, surface)
