-- Grain: one row per scored content item that the enforcement policy sent to review or
-- removal and no moderator has decided yet. Ranked by priority = risk x reach: the chance
-- it violates a policy times how many people it can reach (log of the author's followers).
-- The items of one campaign (the campaigns asset) are one review group, queued together at the
-- priority of its most urgent item, so one reviewer decides them together.
{% set members = env_var('TRUSTLAKE_LAKE_FEATURES') ~ '/campaign_members/*.parquet' %}
with scores as (
    select * from {{ source('scoring', 'content_scores') }}
    qualify row_number() over (partition by content_id order by scored_at desc) = 1
),
queued as (
    select
        s.content_id,
        c.author_id,
        c.created_at,
        c.surface,
        s.action as recommended_action,
        s.model_version,
        s.scored_at,
        greatest(s.p_hate_speech, s.p_harassment, s.p_spam, s.p_scam) as risk,
        case greatest(s.p_hate_speech, s.p_harassment, s.p_spam, s.p_scam)
            when s.p_hate_speech then 'hate_speech'
            when s.p_harassment then 'harassment'
            when s.p_spam then 'spam'
            else 'scam' end as top_policy,
        coalesce(u.follower_count, 0) as author_followers,
        1 + ln(1 + coalesce(u.follower_count, 0)) as reach
    from scores s
    join {{ ref('fct_content') }} c using (content_id)
    left join {{ ref('dim_users') }} u on u.user_id = c.author_id
    where s.action in ('review', 'remove') and not c.was_reviewed
),
grouped as (
    select
        q.*,
        m.campaign_id,
        coalesce('campaign:' || m.campaign_id, 'item:' || q.content_id) as review_group,
        q.risk * q.reach as priority
    from queued q
    {% if external_files_exist(members) %}
    left join {{ source('campaigns', 'campaign_members') }} m using (content_id)
    {% else %}
    left join (select cast(null as bigint) as content_id, cast(null as bigint) as campaign_id where false) m
        using (content_id)
    {% endif %}
),
ranked as (
    select
        *,
        max(priority) over (partition by review_group) as group_priority,
        count(*) over (partition by review_group) as group_items
    from grouped
)
select
    *,
    row_number() over (order by group_priority desc, review_group, priority desc, content_id) as queue_rank
from ranked
