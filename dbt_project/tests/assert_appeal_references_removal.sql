{{ config(meta={'dagster': {'ref': {'name': 'stg_platform__appeals'}}}) }}
-- An appeal always references an enforcement (remove or restrict), never a no_action.
select a.appeal_id, a.decision_id, d.action
from {{ ref('stg_platform__appeals') }} a
left join {{ ref('stg_platform__decisions') }} d using (decision_id)
where d.decision_id is null or not d.is_enforcement
