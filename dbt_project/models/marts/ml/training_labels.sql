-- Grain: one row per judged content item. The single place the ML stages read labels
-- from: text, resolved policy, where the label came from and when it became known, and
-- the text's evaluation bucket (shared by all duplicates of a text).
select
    c.content_id,
    c.author_id,
    c.created_at,
    c.created_date,
    c.surface,
    c.language,
    c.text,
    c.text_hash,
    c.eval_bucket,
    l.resolved_policy as label,
    l.label_source,
    l.label_at
from {{ ref('int_resolved_content_labels') }} l
join {{ ref('stg_platform__content') }} c using (content_id)
