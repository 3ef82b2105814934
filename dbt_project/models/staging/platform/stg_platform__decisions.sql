select
    decision_id,
    content_id,
    moderator_id,
    review_reason,
    policy as decided_policy,
    action,
    action in ('remove', 'restrict') as is_enforcement,
    decided_at,
    decided_at::date as decided_date
from {{ source('raw', 'decisions') }}
qualify row_number() over (partition by decision_id order by "date" desc) = 1
