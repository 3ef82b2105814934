-- Grain: one row per moderator. Accuracy against QA gold on the decisions QA also
-- audited, throughput, latency and how often their enforcements were overturned.
with actions as (
    select * from {{ ref('fct_moderation_actions') }}
)
select
    moderator_id,
    count(*) as decisions,
    count(distinct decided_date) as active_days,
    count(*) / count(distinct decided_date)::double as decisions_per_active_day,
    median(review_latency_hours) as median_latency_hours,
    quantile_cont(review_latency_hours, 0.9) as p90_latency_hours,
    count(*) filter (where gold_policy is not null) as audited_decisions,
    count(*) filter (where agrees_with_gold) / nullif(count(*) filter (where gold_policy is not null), 0)::double as accuracy_vs_gold,
    count(*) filter (where is_enforcement) as enforcements,
    count(*) filter (where was_overturned) / nullif(count(*) filter (where is_enforcement), 0)::double as overturn_rate
from actions
group by moderator_id
