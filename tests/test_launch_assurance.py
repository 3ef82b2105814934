"""Launch assurance (ml/launch/, ml/deployment.py, the registry's approvals and audit log): a launch beyond the
bounds waits for a person and runs as the shadow; the audit log is append-only and survives a writer killed
mid-append; a shadow (model or enforcement rule) never changes an action; the post-launch check fails on a
volume jump. Unit-level: synthetic paired actions and registries, no pipeline run."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml import monitoring as mon
from ml.deployment import deploy
from ml.enforcement import parse_policy
from ml.lake import append_line
from ml.launch import postlaunch
from ml.launch.audit import AuditLog, new_record
from ml.launch.bounds import LaunchBounds
from ml.launch.impact import paired_actions, write_impact
from ml.registry import Registry, RegistryError
from ml.taxonomy import VIOLATING
from ml.training.artifacts import PROBA_COLUMNS
from tests.helpers import launch_impact_of, pair_evaluation, registry_entry, run_cli

pytestmark = pytest.mark.unit

GATED = {"gates_passed": True}


def _registry(tmp_path) -> Registry:
    registry = Registry(tmp_path / "home" / "models")
    registry.register(registry_entry("old", "old", "risk_model", metrics=GATED))
    registry.register(replace(registry_entry("new", "new", "risk_model", metrics=GATED), evaluated_against="old"))
    registry.promote("old", "first champion", "test")
    return registry


def test_a_removal_volume_within_the_bound_is_low_risk_and_beyond_it_high():
    assert launch_impact_of("new", None, (10, 40)).risk_tier == "first"
    assert launch_impact_of("new", "old", (20, 24)).risk_tier == "low"  # +20%, inside ±25%
    high = launch_impact_of("new", "old", (20, 30))  # +50%
    assert high.risk_tier == "high"
    assert high.reasons == ("spam auto-removals 20.0 -> 30.0 a day (+50%), beyond the ±25% bound",)
    # Expected wrongful removals: removals x (1 - the precision of auto-removals on QA gold, 0.9 here).
    wrongful = high.by_policy().select("champion_wrongful_removals", "candidate_wrongful_removals").row(0)
    assert wrongful == pytest.approx((2.0, 3.0))
    # A small policy's move of fewer than min_daily_change items a day is never high risk, whatever its share.
    assert launch_impact_of("new", "old", (2, 6)).risk_tier == "low"


def test_a_candidate_beyond_the_removal_bound_waits_for_approval_and_is_promoted_after_approve(tmp_path):
    registry = _registry(tmp_path)
    impact = launch_impact_of("new", "old", (20, 30))
    write_impact(registry.dir, impact)
    pair = pair_evaluation("new", True, 0.8, champion="old")

    waiting = deploy(registry, pair, impact, actor="dagster run r1")

    assert waiting.promoted is None and waiting.champion == "old"
    assert waiting.awaiting_approval == "new" and waiting.shadow == "new"  # measured live meanwhile, not acting
    assert "trustlake models approve new" in waiting.reason
    assert registry.get("new").launch.approval == "pending"
    # The next run decides the same: still waiting, nothing promoted behind the person's back.
    assert deploy(registry, pair, impact, actor="dagster run r2").awaiting_approval == "new"
    assert registry.champion().version == "old"
    with pytest.raises(RegistryError, match="cannot approve old: it awaits no approval"):
        registry.approve("old", "ana", "typo")

    home = registry.dir.parent
    result = run_cli(home, "models", "approve", "new", "--by", "ana", "--reason", "spam wave; QA agrees")

    assert result.returncode == 0, result.stderr
    assert "champion is now new (was old)" in result.stdout
    after = Registry(registry.dir)
    assert after.champion().version == "new" and after.shadow() is None
    launch = after.get("new").launch
    assert (launch.approval, launch.decided_by, launch.decision_reason) == ("approved", "ana", "spam wave; QA agrees")
    trail = after.audit.read()
    assert not trail.damaged
    assert [(r.action, r.version) for r in trail.records] == [
        ("promote", "old"),
        ("approval_requested", "new"),
        ("shadow_start", "new"),
        ("approve", "new"),
        ("promote", "new"),
        ("shadow_stop", "new"),
    ]
    approve = trail.records[3]
    assert approve.actor == "ana" and approve.risk_tier == "high" and approve.report == "new/launch/impact.json"
    assert approve.report_sha256 is not None  # the exact evidence the approval rested on


def test_a_launch_within_the_bounds_is_promoted_at_once(tmp_path):
    registry = _registry(tmp_path)
    decision = deploy(registry, pair_evaluation("new", True, 0.8, "old"), launch_impact_of("new", "old"), "t")
    assert decision.promoted == "new" and decision.shadow is None
    assert registry.get("new").launch.approval == "not_needed"


def test_a_rejected_launch_stops_shadowing_and_is_never_promoted_by_the_pipeline(tmp_path):
    registry = _registry(tmp_path)
    pair, impact = pair_evaluation("new", True, 0.8, champion="old"), launch_impact_of("new", "old", (20, 40))
    deploy(registry, pair, impact, actor="t")
    registry.reject("new", "ana", "removes satire")
    assert registry.shadow() is None
    again = deploy(registry, pair, impact, actor="t")
    assert again.promoted is None and "rejected by ana" in again.reason


_APPEND_AND_HANG = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, b'{"event_id": "torn", "action": "promo')  # half a record, no end of line
os.fsync(fd)
print("written", flush=True)
time.sleep(60)
"""


def test_the_audit_log_is_append_only_and_survives_a_writer_killed_mid_write(tmp_path):
    registry = _registry(tmp_path)
    before = registry.audit.path.read_bytes()
    writer = subprocess.Popen(
        [sys.executable, "-c", _APPEND_AND_HANG, str(registry.audit.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "written"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    torn = registry.audit.path.read_bytes()
    assert torn.startswith(before) and not torn.endswith(b"\n")

    registry.start_shadow("new", "test", "measure it")  # the next change appends after the torn line

    data = registry.audit.path.read_bytes()
    assert data.startswith(torn)  # nothing already written was rewritten or cut
    trail = registry.audit.read()
    assert [r.action for r in trail.records] == ["promote", "shadow_start"]
    assert [(d.line, "cut off" in d.problem) for d in trail.damaged] == [(2, True)]
    assert trail.lines == (1, 3)  # the record after the damage is not hidden by it
    # Every line the registry committed is in the log, in the registry's history too.
    assert {r.event_id for r in trail.records} == {e["event_id"] for e in registry.history()}


def test_a_change_committed_but_not_logged_is_appended_late_marked_recovered(tmp_path):
    registry = _registry(tmp_path)
    lost = new_record("shadow_start", "new", "test", "killed before logging")
    table = json.loads(registry.path.read_text())
    table["history"].append(lost.to_dict())
    registry.path.write_text(json.dumps(table))  # as if the process died between the two writes

    registry.promote("new", "better", "test")

    records = {r.event_id: r for r in AuditLog(registry.audit.path).read().records}
    assert records[lost.event_id].recovered and not any(r.recovered for k, r in records.items() if k != lost.event_id)


def test_an_appended_line_must_be_one_line(tmp_path):
    with pytest.raises(ValueError, match="one line"):
        append_line(tmp_path / "a.jsonl", b'{"a": 1}\n{"b": 2}')
    assert not (tmp_path / "a.jsonl").exists()


def _scores(rng, n: int) -> pl.DataFrame:
    return pl.DataFrame({c: rng.random(n) for c in PROBA_COLUMNS})


THRESHOLDS = {p: {"auto_action": 0.9, "review": 0.6} for p in VIOLATING}
POLICY = """version: 1
rules:
  - name: remove_high
    policy: any
    score_at_least: auto_action
    action: remove
  - name: trial_lower_removals
    policy: spam
    score_at_least: 0.7
    action: remove
    mode: {mode}
  - name: review
    policy: any
    score_at_least: review
    action: review
"""


def test_a_shadow_rule_is_logged_and_changes_no_action():
    proba = _scores(np.random.default_rng(1), 2000)
    without = parse_policy(POLICY.replace("trial_lower_removals", "x").replace("mode: {mode}", "mode: shadow"))
    shadowed = parse_policy(POLICY.format(mode="shadow"))
    enabled = parse_policy(POLICY.format(mode="enabled"))

    taken = shadowed.decide(proba, THRESHOLDS)
    would = enabled.decide(proba, THRESHOLDS)

    assert (taken == without.decide(proba, THRESHOLDS)).all()
    effects = shadowed.shadow_effects(proba, THRESHOLDS)
    assert effects == {"trial_lower_removals": {"remove": int((would != taken).sum())}} and (would != taken).any()
    assert enabled.shadow_effects(proba, THRESHOLDS) == {}
    with pytest.raises(Exception, match="unknown mode 'dry'"):
        parse_policy(POLICY.format(mode="dry"))


def test_shadow_scoring_keeps_the_champions_actions_and_nothing_acting_reads_it():

    rng = np.random.default_rng(2)
    policy = parse_policy(POLICY.format(mode="enabled"))
    champion, shadow = _scores(rng, 500), _scores(rng, 500)
    champion = champion.with_columns(action=pl.Series(policy.decide(champion, THRESHOLDS)))
    shadow = shadow.with_columns(action=pl.Series(policy.decide(shadow, THRESHOLDS)))
    items = pl.DataFrame(
        {"content_id": range(500), "created_at": [date(2026, 10, 1)] * 500, "surface": ["post"] * 500}
    ).with_columns(pl.col("created_at").cast(pl.Datetime("us")))

    paired = paired_actions(items, shadow, champion)

    assert paired["champion_action"].to_list() == champion["action"].to_list()
    assert paired["candidate_action"].to_list() == shadow["action"].to_list()


def _day_scores(removals: int, reviews: int, n: int = 400) -> pl.DataFrame:
    """A day's content_scores: every item's most likely violation is spam."""
    actions = ["remove"] * removals + ["review"] * reviews + ["allow"] * (n - removals - reviews)
    return pl.DataFrame({c: [0.9 if c == "p_spam" else 0.01] * n for c in PROBA_COLUMNS}).with_columns(
        action=pl.Series(actions)
    )


def test_the_post_launch_check_fails_on_a_planted_volume_jump():
    impact = launch_impact_of("new", "old", (20, 24))  # predicts 24 spam removals a day, no reviews
    bounds, launched_on, day = LaunchBounds(), date(2026, 10, 19), date(2026, 10, 20)

    def statuses(scores, impact=impact, launched_on=launched_on):
        table = postlaunch.launch_volumes(day, "new", scores, impact, bounds, launched_on)
        return dict(zip(table["subject"], table["status"]))

    assert set(statuses(_day_scores(26, 0)).values()) == {"ok"}  # chance
    jumped = statuses(_day_scores(90, 0))  # a planted jump: almost four times the prediction
    assert jumped["remove/spam"] == "fail" and jumped["remove/all"] == "fail"
    assert jumped["remove/scam"] == "ok"
    verdict = mon.verdict(
        postlaunch.launch_volumes(day, "new", _day_scores(90, 0), impact, bounds, launched_on),
        (postlaunch.METRIC,),
        postlaunch.describe,
    )
    assert verdict.level == "fail" and "90 items against 24.0 a day predicted at launch" in verdict.message
    # Not judged: a day from before the launch (history the backtest predicted from), or no prediction at all.
    assert set(statuses(_day_scores(90, 0), launched_on=day).values()) == {"insufficient"}
    assert set(statuses(_day_scores(90, 0), impact=None).values()) == {"insufficient"}
