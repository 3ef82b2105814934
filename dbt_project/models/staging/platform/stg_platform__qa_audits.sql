select
    {{ raw_columns('qa_audits') }},
    audited_at::date as audited_date
from {{ source('raw', 'qa_audits') }}
qualify row_number() over (partition by audit_id order by "date" desc) = 1
