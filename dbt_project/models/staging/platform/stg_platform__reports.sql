select
    report_id,
    content_id,
    reporter_id,
    reason as reported_policy,
    reported_at,
    reported_at::date as reported_date
from {{ source('raw', 'reports') }}
qualify row_number() over (partition by report_id order by "date" desc) = 1
