-- One resolved policy label per content item that a person judged.
-- Precedence: QA gold (an expert audit of a uniform sample) > an overturned appeal
-- (the enforcement was wrong, so the content is benign) > the moderator's decision.
with decisions as (
    select * from {{ ref('stg_platform__decisions') }}
    qualify row_number() over (partition by content_id order by decided_at, decision_id) = 1
),
appeals as (
    select * from {{ ref('stg_platform__appeals') }}
    qualify row_number() over (partition by decision_id order by resolved_at desc, appeal_id) = 1
),
audits as (
    select * from {{ ref('stg_platform__qa_audits') }}
    qualify row_number() over (partition by content_id order by audited_at, audit_id) = 1
),
judged as (
    select content_id from decisions
    union
    select content_id from audits
)
select
    j.content_id,
    d.decision_id,
    d.moderator_id,
    d.decided_policy,
    d.action,
    d.decided_at,
    a.appeal_id,
    a.outcome as appeal_outcome,
    a.resolved_at as appeal_resolved_at,
    q.gold_policy,
    q.audited_at,
    case
        when q.gold_policy is not null then q.gold_policy
        when a.is_overturned then 'benign'
        else d.decided_policy
    end as resolved_policy,
    case
        when q.gold_policy is not null then 'qa_audit'
        when a.is_overturned then 'appeal_overturn'
        else 'moderator_decision'
    end as label_source,
    -- When the label became known: nothing may use it before this time.
    case
        when q.gold_policy is not null then q.audited_at
        when a.is_overturned then a.resolved_at
        else d.decided_at
    end as label_at
from judged j
left join decisions d using (content_id)
left join appeals a on a.decision_id = d.decision_id
left join audits q using (content_id)
