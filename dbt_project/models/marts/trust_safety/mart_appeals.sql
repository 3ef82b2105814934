-- Grain: one row per enforced policy. Appeal and overturn rates are the precision signal
-- of enforcement: a high overturn rate means the policy is being over-enforced.
select
    decided_policy as policy,
    count(*) as enforcements,
    count(*) filter (where was_appealed) as appeals,
    count(*) filter (where was_overturned) as overturned,
    count(*) filter (where was_appealed) / count(*)::double as appeal_rate,
    count(*) filter (where was_overturned) / nullif(count(*) filter (where was_appealed), 0)::double as overturn_rate,
    1 - count(*) filter (where was_overturned) / count(*)::double as enforcement_precision_lower_bound,
    median(date_diff('second', appealed_at, appeal_resolved_at) / 3600.0) as median_appeal_hours,
    -- Against QA gold, where the enforced content was also audited.
    count(*) filter (where gold_policy is not null) as audited_enforcements,
    count(*) filter (where gold_policy = decided_policy) / nullif(count(*) filter (where gold_policy is not null), 0)::double as audited_precision
from {{ ref('fct_moderation_actions') }}
where is_enforcement
group by decided_policy
