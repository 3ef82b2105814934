{{ config(meta={'dagster': {'ref': {'name': 'training_labels'}}}) }}
-- Label resolution is total: every decided or audited content item has exactly one label.
with judged as (
    select content_id from {{ ref('stg_platform__decisions') }}
    union
    select content_id from {{ ref('stg_platform__qa_audits') }}
)
select j.content_id
from judged j
left join {{ ref('training_labels') }} t using (content_id)
where t.label is null
