select
    {{ raw_columns('appeals') }},
    outcome = 'overturned' as is_overturned
from {{ source('raw', 'appeals') }}
qualify row_number() over (partition by appeal_id order by "date" desc) = 1
