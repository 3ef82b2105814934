-- One row per content item, typed and renamed; text and its platform hash kept.
select
    content_id,
    author_id,
    created_at,
    created_at::date as created_date,
    surface,
    language,
    text,
    text_hash,
    {{ eval_bucket('text_hash') }} as eval_bucket,
    has_link,
    has_phone
from {{ source('raw', 'content') }}
qualify row_number() over (partition by content_id order by "date" desc) = 1
