"""Declarative automation: what keeps itself current without a schedule (docs/operations.md).

Schedules start work on a clock (a new day, a weekly retrain); these conditions react to what
changed. Both are eager: run the latest day's partition once any upstream asset updated, unless
the run that updated it also builds this asset (so daily_job and `trustlake run` never cause
a second run), and never while an upstream asset is missing or in progress.

- `content_scores`: a newly promoted champion (deployed_model) or a newly landed day (a landing
  run of ingest_job) re-scores the latest day.
- `mart_review_queue`: rebuilt, and the marts republished, whenever the latest day's scores change,
  so moderators' queue always ranks what the current champion says.
- `shadow_scores`: follows content_scores (and a shadow started or stopped) for the latest day, so the
  shadow's comparison never lags the champion's scores it is compared with.
"""

import dagster as dg

AUTOMATION_CONDITIONS: dict[str, dg.AutomationCondition] = {
    "content_scores": dg.AutomationCondition.eager(),
    "mart_review_queue": dg.AutomationCondition.eager(),
    "shadow_scores": dg.AutomationCondition.eager(),
}


def automation_condition_for(key: dg.AssetKey) -> dg.AutomationCondition | None:
    return AUTOMATION_CONDITIONS.get(key.to_user_string())
