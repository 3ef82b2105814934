-- Grain: one row per content creation day and violating policy. Prevalence is estimated
-- from the QA audit sample (uniform over all content, so unbiased), with a 95% Wilson
-- score interval, daily and over a trailing 7-day window.
with audited as (
    select c.created_date, q.gold_policy
    from {{ ref('stg_platform__qa_audits') }} q
    join {{ ref('stg_platform__content') }} c using (content_id)
),
policies as (
    select unnest([{{ sql_list(var('policies')) }}]) as policy
),
days as (
    select distinct created_date from audited
),
counts as (
    select d.created_date, p.policy,
           count(a.gold_policy) filter (where a.gold_policy = p.policy) as violating,
           (select count(*) from audited x where x.created_date = d.created_date) as audited
    from days d
    cross join policies p
    left join audited a on a.created_date = d.created_date
    where p.policy <> 'benign'
    group by all
),
rolling as (
    select *,
        sum(violating) over w as violating_7d,
        sum(audited) over w as audited_7d
    from counts
    window w as (partition by policy order by created_date rows between 6 preceding and current row)
),
wilson as (
    select *,
        violating / audited::double as p,
        violating_7d / audited_7d::double as p7,
        1.959964 as z
    from rolling
)
select
    created_date as activity_date,
    policy,
    audited as audited_content,
    violating as violating_content,
    p as prevalence,
    greatest(0, (p + z*z/(2*audited) - z*sqrt(p*(1-p)/audited + z*z/(4*audited*audited))) / (1 + z*z/audited)) as prevalence_ci_low,
    least(1, (p + z*z/(2*audited) + z*sqrt(p*(1-p)/audited + z*z/(4*audited*audited))) / (1 + z*z/audited)) as prevalence_ci_high,
    audited_7d as audited_content_7d,
    p7 as prevalence_7d,
    greatest(0, (p7 + z*z/(2*audited_7d) - z*sqrt(p7*(1-p7)/audited_7d + z*z/(4*audited_7d*audited_7d))) / (1 + z*z/audited_7d)) as prevalence_7d_ci_low,
    least(1, (p7 + z*z/(2*audited_7d) + z*sqrt(p7*(1-p7)/audited_7d + z*z/(4*audited_7d*audited_7d))) / (1 + z*z/audited_7d)) as prevalence_7d_ci_high
from wilson
