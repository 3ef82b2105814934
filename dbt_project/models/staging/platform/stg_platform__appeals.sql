select
    appeal_id,
    decision_id,
    content_id,
    appellant_id,
    appealed_at,
    resolved_at,
    outcome,
    outcome = 'overturned' as is_overturned
from {{ source('raw', 'appeals') }}
qualify row_number() over (partition by appeal_id order by "date" desc) = 1
