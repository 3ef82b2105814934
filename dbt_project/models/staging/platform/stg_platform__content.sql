-- One row per content item, typed and renamed; text and its platform hash kept.
select
    {{ raw_columns('content') }},
    created_at::date as created_date,
    {{ eval_bucket('text_hash') }} as eval_bucket
from {{ source('raw', 'content') }}
qualify row_number() over (partition by content_id order by "date" desc) = 1
