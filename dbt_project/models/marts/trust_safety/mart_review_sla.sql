-- Grain: one row per decision day and decided policy: review latency percentiles, from
-- the first report (or the post, for proactive reviews) to the decision.
select
    decided_date as activity_date,
    decided_policy as policy,
    count(*) as reviews,
    quantile_cont(review_latency_hours, 0.5) as p50_latency_hours,
    quantile_cont(review_latency_hours, 0.9) as p90_latency_hours,
    quantile_cont(review_latency_hours, 0.99) as p99_latency_hours,
    count(*) filter (where review_latency_hours > 24) / count(*)::double as share_over_24h
from {{ ref('fct_moderation_actions') }}
group by all
