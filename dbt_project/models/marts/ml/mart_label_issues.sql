-- Grain: one row per training label that confident learning flags as a likely error, for QA
-- to review: the content (or reference record), the label given and by whom, the label a model
-- that never saw the text suggests, and how sure it is. Worst label quality first.
select
    i.label_id,
    t.content_id,
    t.reference_id,
    t.source,
    t.label_source,
    t.moderator_id,
    t.text,
    i.given_label,
    i.suggested_label,
    i.suggested_probability as suggested_confidence,
    i.label_quality,
    t.confidence as label_confidence,
    row_number() over (order by i.label_quality, i.label_id) as review_rank
from {{ source('ml', 'label_issues') }} i
join {{ ref('training_labels') }} t using (label_id)
where i.is_label_issue
