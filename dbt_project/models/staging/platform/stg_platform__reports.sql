select
    {{ raw_columns('reports', rename={'reason': 'reported_policy'}) }},
    reported_at::date as reported_date
from {{ source('raw', 'reports') }}
qualify row_number() over (partition by report_id order by "date" desc) = 1
