-- One row per account; a re-landed account keeps its latest copy.
select
    {{ raw_columns('users', rename={'verified': 'is_verified'}) }},
    "date" as landed_date
from {{ source('raw', 'users') }}
qualify row_number() over (partition by user_id order by "date" desc) = 1
