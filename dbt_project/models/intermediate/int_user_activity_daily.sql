-- Per account and day: what it posted, what was reported and enforced against it, and
-- what it reported. The history features and dim_users are built from this.
with posts as (
    select author_id as user_id, created_date as activity_date, count(*) as posts,
           count(distinct text_hash) as distinct_texts
    from {{ ref('stg_platform__content') }}
    group by all
),
reports_received as (
    select c.author_id as user_id, r.reported_date as activity_date, count(*) as reports_received
    from {{ ref('stg_platform__reports') }} r
    join {{ ref('stg_platform__content') }} c using (content_id)
    group by all
),
enforcements as (
    select c.author_id as user_id, d.decided_date as activity_date,
           count(*) filter (where d.is_enforcement) as enforcements_received
    from {{ ref('stg_platform__decisions') }} d
    join {{ ref('stg_platform__content') }} c using (content_id)
    group by all
),
reports_filed as (
    select reporter_id as user_id, reported_date as activity_date, count(*) as reports_filed
    from {{ ref('stg_platform__reports') }}
    group by all
),
keys as (
    select user_id, activity_date from posts
    union select user_id, activity_date from reports_received
    union select user_id, activity_date from enforcements
    union select user_id, activity_date from reports_filed
)
select
    k.user_id,
    k.activity_date,
    coalesce(p.posts, 0) as posts,
    coalesce(p.distinct_texts, 0) as distinct_texts,
    coalesce(rr.reports_received, 0) as reports_received,
    coalesce(e.enforcements_received, 0) as enforcements_received,
    coalesce(rf.reports_filed, 0) as reports_filed
from keys k
left join posts p using (user_id, activity_date)
left join reports_received rr using (user_id, activity_date)
left join enforcements e using (user_id, activity_date)
left join reports_filed rf using (user_id, activity_date)
