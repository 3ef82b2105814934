-- One row per labelled reference record (grain: source, record_id), typed, with the text's
-- evaluation bucket: a reference text shares its bucket with every platform copy of it.
select
    source,
    corpus,
    record_id,
    source || ':' || record_id as reference_id,
    original_label,
    policy,
    text,
    text_hash,
    {{ eval_bucket('text_hash') }} as eval_bucket,
    confidence
from {{ source('reference', 'reference_labels') }}
qualify row_number() over (partition by source, record_id order by text_hash) = 1
