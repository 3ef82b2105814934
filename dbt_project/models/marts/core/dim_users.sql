-- One row per account: attributes plus lifetime activity and enforcement history.
with activity as (
    select
        user_id,
        sum(posts) as posts,
        sum(reports_received) as reports_received,
        sum(enforcements_received) as enforcements_received,
        sum(reports_filed) as reports_filed,
        min(activity_date) filter (where posts > 0) as first_post_date,
        max(activity_date) filter (where posts > 0) as last_post_date
    from {{ ref('int_user_activity_daily') }}
    group by user_id
),
overturned as (
    select appellant_id as user_id, count(*) filter (where is_overturned) as overturned_enforcements
    from {{ ref('stg_platform__appeals') }}
    group by all
),
shared as (
    select device_fingerprint, count(*) as accounts_on_device
    from {{ ref('stg_platform__users') }} group by all
)
select
    u.user_id,
    u.signup_at,
    u.country,
    u.language,
    u.device_fingerprint,
    u.ip_fingerprint,
    u.is_verified,
    u.follower_count,
    s.accounts_on_device,
    coalesce(a.posts, 0) as posts,
    coalesce(a.reports_received, 0) as reports_received,
    coalesce(a.enforcements_received, 0) as enforcements_received,
    coalesce(o.overturned_enforcements, 0) as overturned_enforcements,
    coalesce(a.enforcements_received, 0) - coalesce(o.overturned_enforcements, 0) as standing_violations,
    coalesce(a.reports_filed, 0) as reports_filed,
    a.first_post_date,
    a.last_post_date
from {{ ref('stg_platform__users') }} u
left join activity a using (user_id)
left join overturned o using (user_id)
left join shared s using (device_fingerprint)
