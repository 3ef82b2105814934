-- Moderator decisions on content that QA also audited: did the moderator match gold?
select
    d.decision_id,
    d.moderator_id,
    d.content_id,
    d.decided_policy,
    q.gold_policy,
    d.decided_policy = q.gold_policy as agrees_with_gold,
    (d.decided_policy <> 'benign') = (q.gold_policy <> 'benign') as agrees_on_violation,
    d.decided_at,
    q.audited_at
from {{ ref('stg_platform__decisions') }} d
join {{ ref('stg_platform__qa_audits') }} q using (content_id)
