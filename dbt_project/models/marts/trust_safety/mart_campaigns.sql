-- Grain: one row per coordinated campaign (the campaigns asset: posts linked by near-duplicate text and
-- shared links, numbers and addresses across accounts, kept when accounts burst within an hour, share
-- one artifact or one device or IP fingerprint; ml/campaigns/clusters.py), with what moderation has done about its posts so far and its
-- members. Rebuilt whole from the lake on every warehouse build.
{% set pattern = env_var('TRUSTLAKE_LAKE_FEATURES') ~ '/campaigns/*.parquet' %}
{% if external_files_exist(pattern) %}
with members as (
    select
        m.campaign_id,
        count(*) filter (where c.was_reviewed) as reviewed_posts,
        count(*) filter (where c.action in ('remove', 'restrict')) as enforced_posts,
        count(*) filter (where c.gold_policy is not null) as qa_audited_posts,
        count(*) filter (where c.gold_policy is not null and c.gold_policy <> 'benign') as qa_violating_posts,
        count(distinct c.surface) as surfaces,
        list(m.content_id order by m.created_at, m.content_id) as member_content_ids,
        list(distinct m.author_id) as member_author_ids
    from {{ source('campaigns', 'campaign_members') }} m
    left join {{ ref('fct_content') }} c using (content_id)
    group by m.campaign_id
)
select
    k.campaign_id,
    k.posts,
    k.accounts,
    k.first_seen,
    k.last_seen,
    date_diff('minute', k.first_seen, k.last_seen) / 60.0 as active_hours,
    k.burst_posts_per_hour,
    k.burst_accounts,
    k.artifact_accounts,
    k.fingerprint_accounts,
    k.coordination,
    k.dominant_policy,
    k.actioned_share,
    m.reviewed_posts,
    m.enforced_posts,
    m.qa_audited_posts,
    m.qa_violating_posts,
    m.surfaces,
    m.member_content_ids,
    m.member_author_ids
from {{ source('campaigns', 'campaigns') }} k
join members m using (campaign_id)
{% else %}
select
    cast(null as bigint) as campaign_id, cast(null as bigint) as posts, cast(null as bigint) as accounts,
    cast(null as timestamp) as first_seen, cast(null as timestamp) as last_seen, cast(null as double) as active_hours,
    cast(null as bigint) as burst_posts_per_hour, cast(null as bigint) as burst_accounts,
    cast(null as bigint) as artifact_accounts, cast(null as bigint) as fingerprint_accounts,
    cast(null as varchar) as coordination,
    cast(null as varchar) as dominant_policy, cast(null as double) as actioned_share,
    cast(null as bigint) as reviewed_posts, cast(null as bigint) as enforced_posts,
    cast(null as bigint) as qa_audited_posts, cast(null as bigint) as qa_violating_posts,
    cast(null as bigint) as surfaces, cast(null as bigint[]) as member_content_ids,
    cast(null as bigint[]) as member_author_ids
where false
{% endif %}
