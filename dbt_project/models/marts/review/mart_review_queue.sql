-- Grain: one row per scored content item that the enforcement policy sent to review or
-- removal and no moderator has decided yet. Ranked by priority = risk x reach: the chance
-- it violates a policy times how many people it can reach (log of the author's followers).
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
)
select
    *,
    risk * reach as priority,
    row_number() over (order by risk * reach desc, content_id) as queue_rank
from queued
