{{ config(meta={'dagster': {'ref': {'name': 'stg_platform__decisions'}}}) }}
-- A decision never precedes the content it concerns.
select d.decision_id, d.decided_at, c.created_at
from {{ ref('stg_platform__decisions') }} d
join {{ ref('stg_platform__content') }} c using (content_id)
where d.decided_at < c.created_at
