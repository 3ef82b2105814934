select
    {{ raw_columns('decisions', rename={'policy': 'decided_policy'}) }},
    action in ({{ sql_list(var('enforcements')) }}) as is_enforcement,
    decided_at::date as decided_date
from {{ source('raw', 'decisions') }}
qualify row_number() over (partition by decision_id order by "date" desc) = 1
