select
    audit_id,
    content_id,
    auditor_id,
    gold_policy,
    audited_at,
    audited_at::date as audited_date
from {{ source('raw', 'qa_audits') }}
qualify row_number() over (partition by audit_id order by "date" desc) = 1
