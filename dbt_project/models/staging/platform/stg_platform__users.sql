-- One row per account; a re-landed account keeps its latest copy.
select
    user_id,
    signup_at,
    country,
    language,
    device_fingerprint,
    ip_fingerprint,
    verified as is_verified,
    follower_count,
    "date" as landed_date
from {{ source('raw', 'users') }}
qualify row_number() over (partition by user_id order by "date" desc) = 1
