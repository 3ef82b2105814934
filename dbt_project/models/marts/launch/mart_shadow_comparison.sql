-- Grain: one row per content day, champion, shadow, policy and surface while a shadow was deployed.
-- The shadow scored the same content as the champion and never acted: what each would have done
-- (remove, review, allow), the items it would have treated more or less severely, the review hours each
-- implies, who QA gold agrees with where they disagree, and the removals each would expect to be wrong.
-- An item counts under the policy the shadow acts on it for, else the champion's (ml/launch/impact.py).
{% set pattern = env_var('TRUSTLAKE_LAKE_SCORES') ~ '/shadow_scores/date=*/*.parquet' %}
{% if external_files_exist(pattern) %}
with paired as (
    select
        s.*,
        cast(s.created_at as date) as content_date,
        case s.champion_action when 'remove' then 2 when 'review' then 1 else 0 end as champion_severity,
        case s.shadow_action when 'remove' then 2 when 'review' then 1 else 0 end as shadow_severity,
        c.gold_policy,
        -- An action agrees with QA gold when it acts on content QA found violating, or allows content it found benign.
        (s.champion_action != 'allow') = (c.gold_policy != 'benign') as champion_agrees,
        (s.shadow_action != 'allow') = (c.gold_policy != 'benign') as shadow_agrees
    from {{ source('launch', 'shadow_scores') }} s
    left join {{ ref('fct_content') }} c using (content_id)
)
select
    content_date,
    champion_version,
    shadow_version,
    policy,
    surface,
    count(*) as items,
    count(*) filter (where champion_action = 'remove') as champion_removals,
    count(*) filter (where champion_action = 'review') as champion_reviews,
    count(*) filter (where champion_action = 'allow') as champion_allows,
    count(*) filter (where shadow_action = 'remove') as shadow_removals,
    count(*) filter (where shadow_action = 'review') as shadow_reviews,
    count(*) filter (where shadow_action = 'allow') as shadow_allows,
    count(*) filter (where shadow_severity > champion_severity) as flips_to_harsher,
    count(*) filter (where shadow_severity < champion_severity) as flips_to_softer,
    count(*) filter (where champion_action = 'allow' and shadow_action = 'remove') as allow_to_remove,
    count(*) filter (where champion_action = 'remove' and shadow_action = 'allow') as remove_to_allow,
    count(*) filter (where champion_action = 'review') * any_value(review_seconds) / 3600.0 as champion_review_hours,
    count(*) filter (where shadow_action = 'review') * any_value(review_seconds) / 3600.0 as shadow_review_hours,
    count(*) filter (where champion_action != shadow_action and gold_policy is not null) as qa_audited_disagreements,
    count(*) filter (where champion_action != shadow_action and champion_agrees) as champion_agrees_with_qa,
    count(*) filter (where champion_action != shadow_action and shadow_agrees) as shadow_agrees_with_qa,
    sum(case when champion_action = 'remove' then 1 - champion_qa_precision end) as champion_expected_wrongful_removals,
    sum(case when shadow_action = 'remove' then 1 - shadow_qa_precision end) as shadow_expected_wrongful_removals
from paired
group by all
{% else %}
select
    cast(null as date) as content_date, cast(null as varchar) as champion_version, cast(null as varchar) as shadow_version,
    cast(null as varchar) as policy, cast(null as varchar) as surface, cast(null as bigint) as items,
    cast(null as bigint) as champion_removals, cast(null as bigint) as champion_reviews, cast(null as bigint) as champion_allows,
    cast(null as bigint) as shadow_removals, cast(null as bigint) as shadow_reviews, cast(null as bigint) as shadow_allows,
    cast(null as bigint) as flips_to_harsher, cast(null as bigint) as flips_to_softer, cast(null as bigint) as allow_to_remove,
    cast(null as bigint) as remove_to_allow, cast(null as double) as champion_review_hours,
    cast(null as double) as shadow_review_hours, cast(null as bigint) as qa_audited_disagreements,
    cast(null as bigint) as champion_agrees_with_qa, cast(null as bigint) as shadow_agrees_with_qa,
    cast(null as double) as champion_expected_wrongful_removals, cast(null as double) as shadow_expected_wrongful_removals
where false
{% endif %}
