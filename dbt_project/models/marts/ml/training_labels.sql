-- Grain: one row per label event, from every label source. The single place the ML stages read
-- labels from. Platform content contributes its resolved label (QA gold > overturned appeal >
-- moderator decision, int_resolved_content_labels); every reference record contributes its own.
-- `confidence` is how often a label of that kind is right:
--   qa_audit 1.0 (expert gold); appeal_overturn and upheld decisions 0.95 (a second review agreed);
--   moderator_decision: the moderator's accuracy against QA gold, shrunk towards 0.85 with the
--   weight of 20 audits, so a moderator with few audits gets the platform-wide prior;
--   reference: the share of annotators behind the label, or the source's documented default.
-- `eval_bucket` comes from the text hash, so a text and all its copies, whatever their source,
-- share a bucket: the training set keeps every evaluation-bucket text out of training.
with moderator_accuracy as (
    select
        moderator_id,
        (count(*) filter (where agrees_with_gold) + 0.85 * 20) / (count(*) + 20) as accuracy
    from {{ ref('int_moderator_qa_agreement') }}
    group by moderator_id
),
platform as (
    select
        'content:' || c.content_id as label_id,
        c.content_id,
        cast(null as varchar) as reference_id,
        c.author_id,
        c.created_at,
        c.created_date,
        c.surface,
        c.language,
        c.text,
        c.text_hash,
        c.eval_bucket,
        l.resolved_policy as label,
        l.label_source,
        'platform' as source,
        case
            when l.label_source = 'qa_audit' then 1.0
            when l.label_source = 'appeal_overturn' or l.appeal_outcome = 'upheld' then 0.95
            else coalesce(m.accuracy, 0.85)
        end as confidence,
        l.moderator_id,
        l.label_at
    from {{ ref('int_resolved_content_labels') }} l
    join {{ ref('stg_platform__content') }} c using (content_id)
    left join moderator_accuracy m on m.moderator_id = l.moderator_id
),
reference as (
    select
        'reference:' || reference_id as label_id,
        cast(null as bigint) as content_id,
        reference_id,
        cast(null as bigint) as author_id,
        cast(null as timestamp) as created_at,
        cast(null as date) as created_date,
        cast(null as varchar) as surface,
        cast(null as varchar) as language,
        text,
        text_hash,
        eval_bucket,
        policy as label,
        'reference' as label_source,
        source,
        confidence,
        cast(null as bigint) as moderator_id,
        cast(null as timestamp) as label_at
    from {{ ref('stg_reference__labelled_texts') }}
)
select * from platform
union all by name
select * from reference
