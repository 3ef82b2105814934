"""Monitoring of the champion (ml/monitoring/) and the simulator's world shifts, without Dagster:
PSI on declared bins, live precision, prevalence against QA, verdicts, retraining evidence, and a shift a
classifier trained before it really misses."""

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml import monitoring as mon
from ml.simulator import simulate_days
from ml.taxonomy import VIOLATING
from ml.world import SimConfig
from orchestration.settings import Settings

DAY = date(2026, 10, 13)
LIMITS = mon.MonitoringThresholds()


def reference(**changes) -> mon.Reference:
    base = dict(
        champion="risk_model-a",
        dataset_version="d1",
        window_start=date(2026, 10, 1),
        window_end=date(2026, 10, 7),
        rows=1000,
        labels_until=datetime(2026, 10, 12, 23),
        label_rows=500,
        bins={},
        thresholds={p: {"auto_action": 0.8, "review": 0.5} for p in VIOLATING},
        promised_precision={p: 0.95 for p in VIOLATING},
        prevalence_offset={p: 0.0 for p in VIOLATING},
        qa_audited=100,
    )
    return mon.Reference(**{**base, **changes})


# -- PSI ----------------------------------------------------------------------------------------
def test_psi_on_declared_deciles_equals_the_textbook_formula_and_is_zero_on_the_reference():
    rng = np.random.default_rng(0)
    before, after = rng.normal(size=5000), rng.normal(0.5, 1.0, size=3000)
    bins = mon.fit_bins("text_chars", pl.Series(before))
    assert len(bins.edges) == mon.PSI_BINS - 1
    assert mon.psi(bins, pl.Series(before)) == pytest.approx(0.0, abs=1e-12)
    # PSI = sum over the reference's decile bins of (q - p) * ln(q / p), q the new share, p the reference's.
    edges = np.concatenate([[-np.inf], np.quantile(before, np.linspace(0, 1, mon.PSI_BINS + 1))[1:-1], [np.inf]])
    p = np.histogram(before, edges)[0] / len(before)
    q = np.histogram(after, edges)[0] / len(after)
    assert mon.psi(bins, pl.Series(after)) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-6)
    assert mon.psi(bins, pl.Series(after)) > 0.2


def test_flags_and_categories_get_one_bin_per_value_so_a_share_change_or_a_new_value_shows():
    rng = np.random.default_rng(1)
    flag = mon.fit_bins("has_link", pl.Series(rng.random(2000) < 0.2))
    assert flag.values == ("0.0", "1.0") and flag.by_value
    assert mon.psi(flag, pl.Series(rng.random(2000) < 0.2)) < 0.01
    assert mon.psi(flag, pl.Series(rng.random(2000) < 0.5)) > 0.25
    surface = mon.fit_bins("surface", pl.Series(["post"] * 60 + ["comment"] * 40))
    assert mon.psi(surface, pl.Series(["post"] * 60 + ["comment"] * 40)) == pytest.approx(0.0, abs=1e-12)
    assert mon.psi(surface, pl.Series(["post"] * 50 + ["live_stream"] * 50)) > 1.0  # never seen: its own bin


def test_score_bands_ignore_moves_inside_the_bottom_band_but_not_mass_moving_up():
    rng = np.random.default_rng(2)
    scores = mon.fit_bins("p_spam", pl.Series(rng.uniform(0.0, 0.05, size=2000)))
    assert scores.edges == mon.FIXED_EDGES["p_spam"]
    assert mon.psi(scores, pl.Series(rng.uniform(0.05, 0.09, size=2000))) == pytest.approx(0.0, abs=1e-9)
    moved = np.concatenate([rng.uniform(0.0, 0.05, size=1500), rng.uniform(0.5, 0.6, size=500)])
    assert mon.psi(scores, pl.Series(moved)) > LIMITS.drift_psi_fail


def test_account_age_is_read_in_day_week_month_bands_so_ageing_is_not_drift_but_new_accounts_are():
    rng = np.random.default_rng(3)
    ages = rng.uniform(40, 80, size=2000)
    bins = mon.fit_bins("account_age_days", pl.Series(ages))
    assert mon.psi(bins, pl.Series(ages + 7)) < 0.05  # everyone a week older
    fresh = np.concatenate([ages[:1500], rng.uniform(0, 1, size=500)])
    assert mon.psi(bins, pl.Series(fresh)) > LIMITS.drift_psi_fail


def test_drift_judges_only_days_with_enough_rows():
    rng = np.random.default_rng(4)
    ref = reference(bins={"text_chars": mon.fit_bins("text_chars", pl.Series(rng.normal(size=2000)))})

    def frame(n, shift):
        return pl.DataFrame({"text_chars": rng.normal(shift, 1, size=n), **{f"p_{p}": np.zeros(n) for p in VIOLATING}})

    big = mon.drift(ref, DAY, frame(1000, 2.0), LIMITS)
    assert big.filter(pl.col("subject") == "text_chars")["status"][0] == "fail"
    small = mon.drift(ref, DAY, frame(LIMITS.min_rows - 1, 2.0), LIMITS)
    assert small.filter(pl.col("subject") == "text_chars")["status"][0] == "insufficient"


def test_a_window_feature_is_not_judged_on_a_day_its_window_reaches_before_the_lake():
    # The lake's first day: posts_last_24h counts only that day's posts (no day before is held), so it reads
    # low against any reference; it is reported, not judged. The day after, it is judged as any feature.
    rng = np.random.default_rng(6)
    ref = reference(bins={"posts_last_24h": mon.fit_bins("posts_last_24h", pl.Series(rng.poisson(6, size=2000)))})
    low = pl.DataFrame({"posts_last_24h": rng.poisson(2, size=1000), **{f"p_{p}": np.zeros(1000) for p in VIOLATING}})

    def status(day):
        table = mon.drift(ref, day, low, LIMITS, history_from=DAY)
        return table.filter(pl.col("subject") == "posts_last_24h").row(0, named=True)

    first, second = status(DAY), status(DAY + timedelta(days=1))
    assert first["value"] == pytest.approx(second["value"]) and first["value"] > LIMITS.drift_psi_fail
    assert first["status"] == "insufficient" and second["status"] == "fail"


def test_a_reference_survives_its_json_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    ref = reference(
        bins={
            "text_chars": mon.fit_bins("text_chars", pl.Series(rng.normal(size=500))),
            "surface": mon.fit_bins("surface", pl.Series(["post", "comment"] * 10)),
        }
    )
    directory = mon.reference_dir(tmp_path, ref.champion, ref.dataset_version)
    assert not mon.reference_complete(directory)
    mon.write_reference(ref, pl.DataFrame({"content_id": [1, 2]}), directory)
    assert mon.reference_complete(directory)
    assert mon.read_reference(directory) == ref


def test_a_reference_binned_by_older_rules_is_binned_again_from_its_scored_rows():
    rng = np.random.default_rng(6)
    scored = pl.DataFrame(
        {
            "text_chars": rng.normal(size=500),
            "prior_posts": rng.integers(0, 50, size=500),
            **{f"p_{p}": rng.random(500) for p in VIOLATING},
        }
    )
    old = reference(bins={"prior_posts": mon.fit_bins("prior_posts", scored["prior_posts"])}, binning="older")
    new = mon.rebinned(old, scored)
    assert new.binning == mon.BINNING and "prior_posts" not in new.bins  # no longer watched
    assert set(new.bins) == {"text_chars", *(f"p_{p}" for p in VIOLATING), "risk"}
    assert mon.rebinned(new, scored) is new


def test_the_training_window_is_the_train_split_days_of_platform_content():
    frame = pl.DataFrame(
        {
            "content_id": [1, 2, 3, None],
            "split": ["train", "train", "test", "train"],
            "created_date": [date(2026, 10, 2), date(2026, 10, 5), date(2026, 10, 9), None],
            "label_at": [datetime(2026, 10, 3), datetime(2026, 10, 6), datetime(2026, 10, 11), None],
        }
    )
    assert mon.training_window(frame) == (date(2026, 10, 2), date(2026, 10, 5), datetime(2026, 10, 11), 3)
    with pytest.raises(ValueError, match="no platform content in its train split"):
        mon.training_window(frame.filter(pl.col("split") != "train"))


# -- live precision ------------------------------------------------------------------------------
def day_scores(n_remove: int, n_allow: int = 100) -> pl.DataFrame:
    n = n_remove + n_allow
    return pl.DataFrame(
        {
            "content_id": list(range(n)),
            "action": ["remove"] * n_remove + ["allow"] * n_allow,
            **{f"p_{p}": [0.9 if p == "spam" and i < n_remove else 0.01 for i in range(n)] for p in VIOLATING},
        }
    )


def labels_for(ids, label: str, source: str = "moderator_decision") -> pl.DataFrame:
    return pl.DataFrame({"content_id": list(ids), "label": [label] * len(ids), "label_source": [source] * len(ids)})


def live(scores, labels) -> dict:
    table = mon.live_precision(reference(), DAY, scores, labels, LIMITS)
    return table.filter(pl.col("metric") == "live_precision", pl.col("subject") == "all").row(0, named=True)


def test_live_precision_keeps_its_promise_when_later_labels_confirm_the_removals():
    row = live(day_scores(40), pl.concat([labels_for(range(38), "spam"), labels_for(range(38, 40), "benign")]))
    assert row["value"] == pytest.approx(0.95) and row["expected"] == pytest.approx(0.95)
    assert row["n"] == 40 and row["status"] == "ok"


def test_live_precision_fails_when_later_labels_overturn_the_removals():
    labels = pl.concat([labels_for(range(20), "spam"), labels_for(range(20, 40), "benign", "appeal_overturn")])
    row = live(day_scores(40), labels)
    assert row["value"] == pytest.approx(0.5) and row["ci_high"] < row["expected"]
    assert row["status"] == "fail"


def test_live_precision_is_not_judged_on_a_handful_of_labels():
    row = live(day_scores(40), labels_for(range(5), "benign"))
    assert row["n"] == 5 and row["status"] == "insufficient"


def test_qa_recall_counts_audited_violations_the_champion_let_through():
    scores = day_scores(10, 30)
    labels = pl.concat([labels_for(range(10), "spam", "qa_audit"), labels_for(range(10, 20), "spam", "qa_audit")])
    table = mon.live_precision(reference(), DAY, scores, labels, LIMITS)
    recall = table.filter(pl.col("metric") == "qa_recall", pl.col("subject") == "spam").row(0, named=True)
    assert recall["value"] == pytest.approx(0.5) and recall["n"] == 20


# -- prevalence -----------------------------------------------------------------------------------
def prevalence_row(offset: float, qa_spam: int, audited: int = 100, p_spam: float = 0.2) -> dict:
    n = 1000
    scores = pl.DataFrame(
        {"content_id": list(range(n)), **{f"p_{p}": [p_spam if p == "spam" else 0.0] * n for p in VIOLATING}}
    )
    qa = pl.DataFrame(
        {"content_id": list(range(audited)), "label": ["spam"] * qa_spam + ["benign"] * (audited - qa_spam)}
    )
    table = mon.prevalence(
        reference(prevalence_offset={p: offset if p == "spam" else 0.0 for p in VIOLATING}), DAY, scores, qa, LIMITS
    )
    return table.filter(pl.col("metric") == "prevalence_gap", pl.col("subject") == "spam").row(0, named=True)


def test_prevalence_gap_fails_when_qa_finds_far_more_than_the_champion_predicts():
    row = prevalence_row(offset=0.0, qa_spam=45)
    assert row["value"] == pytest.approx(0.2 - 0.45) and row["status"] == "fail"


def test_prevalence_gap_is_held_to_the_champions_own_gap_on_its_training_window():
    assert prevalence_row(offset=0.15, qa_spam=5)["status"] == "ok"  # over-predicts by 0.15, as it always did
    assert prevalence_row(offset=0.0, qa_spam=5)["status"] == "fail"


def test_prevalence_gap_inside_the_qa_interval_or_on_few_audits_is_not_an_alarm():
    assert prevalence_row(offset=0.0, qa_spam=2, audited=10)["status"] == "insufficient"
    assert prevalence_row(offset=0.0, qa_spam=24)["status"] == "ok"  # 0.24 audited, 0.2 predicted: noise


def audited_day(spam_score: float, audited_spam: int) -> dict:
    """A day of 1,000 items, 170 of them spam scored `spam_score`, the rest 0.02; 60 audits, the first
    `audited_spam` of them spam."""
    spam = [i < 170 for i in range(1000)]
    scores = pl.DataFrame(
        {
            "content_id": list(range(1000)),
            **{f"p_{p}": [spam_score if s else 0.02 for s in spam] if p == "spam" else [0.0] * 1000 for p in VIOLATING},
        }
    )
    audited = list(range(audited_spam)) + list(range(170, 230 - audited_spam))
    qa = pl.DataFrame({"content_id": audited, "label": ["spam" if spam[i] else "benign" for i in audited]})
    table = mon.prevalence(reference(), DAY, scores, qa, LIMITS)
    return table.filter(pl.col("metric") == "prevalence_gap", pl.col("subject") == "spam").row(0, named=True)


def test_an_audit_sample_rich_in_violations_the_champion_scores_high_is_not_an_alarm():
    # 19 of 60 audits are spam on a day whose prevalence is 0.17 (the tail of the sample, not a miss): the
    # day's mean score 0.17 lies outside the audit share's 95% interval, but on the audited items themselves
    # the champion's scores match their labels.
    row = audited_day(spam_score=0.9, audited_spam=19)
    assert row["value"] == pytest.approx((19 * -0.1 + 41 * 0.02) / 60) and row["status"] == "ok"


def test_a_champion_that_scores_violations_low_is_an_alarm_the_day_average_would_hide():
    # Spam scored 0.55: the day's mean (0.11) lies inside the audit share's interval (10 of 60: 0.09-0.28),
    # the gap on the audited items (-0.058, interval -0.10 to -0.01) does not include the usual gap of 0.
    row = audited_day(spam_score=0.55, audited_spam=10)
    assert row["ci_high"] < 0 and row["status"] == "warn"


def test_a_small_audit_sample_far_off_warns_and_fails_only_when_its_interval_is_past_the_threshold():
    # Half the audits spam, scored 0.95 or 0.15 by turns; the other half benign at 0.02: the gap moved by 0.215.
    # From 24 audits its interval's nearer end moved only 0.065: a warning. From 80, 0.134: an error.
    def day(per_class: int) -> dict:
        n = 2 * per_class
        spam = [0.95, 0.15] * (per_class // 2) + [0.02] * per_class
        scores = pl.DataFrame(
            {"content_id": list(range(n)), **{f"p_{p}": spam if p == "spam" else [0.0] * n for p in VIOLATING}}
        )
        qa = pl.DataFrame({"content_id": list(range(n)), "label": ["spam"] * per_class + ["benign"] * per_class})
        table = mon.prevalence(reference(), DAY, scores, qa, LIMITS)
        return table.filter(pl.col("metric") == "prevalence_gap", pl.col("subject") == "spam").row(0, named=True)

    small, large = day(12), day(40)
    assert small["value"] == pytest.approx(large["value"]) == pytest.approx(-0.215)
    assert small["ci_high"] > -LIMITS.prevalence_gap_fail and small["status"] == "warn"
    assert large["ci_high"] < -LIMITS.prevalence_gap_fail and large["status"] == "fail"


# -- verdicts and retraining evidence ------------------------------------------------------------
def test_the_verdict_is_the_worst_day_and_names_it():
    rows = pl.concat(
        [
            mon.metric_rows(DAY, "c", [{"metric": "score_psi", "subject": "p_spam", "value": 0.05, "status": "ok"}]),
            mon.metric_rows(
                DAY + timedelta(days=1),
                "c",
                [{"metric": "score_psi", "subject": "p_spam", "value": 0.4, "status": "fail"}],
            ),
            mon.metric_rows(
                DAY + timedelta(days=2),
                "c",
                [{"metric": "score_psi", "subject": "risk", "value": 0.12, "status": "warn"}],
            ),
        ]
    )
    verdict = mon.verdict(rows, ("score_psi",), lambda r: f"{r['date']} {r['subject']}")
    assert verdict.level == "fail" and not verdict.passed
    assert verdict.message.startswith(f"{DAY + timedelta(days=1)} p_spam") and "1 fail" in verdict.message


def test_new_labels_are_platform_labels_stamped_after_the_champions_newest():
    labels = pl.DataFrame(
        {
            "label_source": ["moderator_decision", "qa_audit", "appeal_overturn", "reference", "moderator_decision"],
            "label_at": [
                datetime(2026, 10, 13),
                datetime(2026, 10, 14),
                datetime(2026, 10, 12),
                None,
                datetime(2026, 10, 15),
            ],
        }
    )
    assert mon.new_labels_since(labels, datetime(2026, 10, 12, 23)) == {"moderator_decision": 2, "qa_audit": 1}
    assert sum(mon.new_labels_since(labels, None).values()) == 4


def test_retrain_request_names_its_evidence_so_the_same_evidence_keeps_its_key():
    drifted = {"value": 0.4, "metric": "feature_psi", "subject": "component_size", "date": DAY}
    by_drift = mon.retrain_request("c1", "d1", {"qa_audit": 5}, 100, drifted, 0.25)
    assert by_drift.reason == "drift" and by_drift.run_key == "drift:c1"
    assert by_drift.tags["trustlake/retrain_reason"] == "drift" and by_drift.tags["trustlake/drift_psi"] == "0.400"
    assert by_drift.tags["trustlake/drift_metric"] == "feature_psi:component_size"
    by_labels = mon.retrain_request("c1", "d1", {"moderator_decision": 150, "qa_audit": 10}, 100, None, 0.25)
    assert by_labels.reason == "new_labels" and by_labels.run_key == "new_labels:c1:1"
    assert by_labels.tags["trustlake/new_labels"] == "160"
    assert mon.retrain_request("c1", "d1", {"moderator_decision": 250}, 100, None, 0.25).run_key == "new_labels:c1:2"
    assert mon.retrain_request("c1", "d1", {"moderator_decision": 99}, 100, {**drifted, "value": 0.2}, 0.25) is None


def test_thresholds_must_warn_before_they_fail():
    with pytest.raises(ValueError, match="psi thresholds"):
        mon.MonitoringThresholds(drift_psi_warn=0.3, drift_psi_fail=0.2)


def test_thresholds_and_the_world_shift_come_from_the_environment():
    settings = Settings.from_env(
        {
            "TRUSTLAKE_DRIFT_PSI_FAIL": "0.4",
            "TRUSTLAKE_RETRAIN_MIN_NEW_LABELS": "50",
            "TRUSTLAKE_WORLD_SHIFT": "slang",
            "TRUSTLAKE_WORLD_SHIFT_FROM": "2026-10-09",
        }
    )
    assert settings.monitoring.drift_psi_fail == 0.4 and settings.monitoring.retrain_min_new_labels == 50
    assert settings.monitoring.drift_psi_warn == mon.MonitoringThresholds.drift_psi_warn
    assert (settings.simulator.world_shift, settings.simulator.world_shift_from) == ("slang", date(2026, 10, 9))
    assert Settings.from_env({}).simulator.world_shift == ""
    with pytest.raises(ValueError, match="needs the day it starts.*TRUSTLAKE_WORLD_SHIFT_FROM unset"):
        Settings.from_env({"TRUSTLAKE_WORLD_SHIFT": "spam_campaign"})


# -- ops alerts -----------------------------------------------------------------------------------
def test_an_ops_alert_is_one_row_per_run_however_often_it_is_recorded(tmp_path):
    at = datetime(2026, 10, 13, 8, 30)
    for _ in range(2):
        mon.write_ops_alert(
            tmp_path,
            "r1",
            "score_job",
            ["content_scores"],
            ["content_scores"],
            "Failure: no champion\n\n  line two\nthree\nfour\nfive\nsix",
            at,
            "2026-10-13..2026-10-13",
        )
    mon.write_ops_alert(tmp_path, "r2", "ingest_job", [], [], "worker died", at + timedelta(hours=1))
    alerts = mon.read_ops_alerts(tmp_path)
    assert alerts["run_id"].to_list() == ["r1", "r2"]
    assert alerts.row(0, named=True)["error"] == "Failure: no champion\n  line two\nthree\nfour\nfive"
    assert not list((tmp_path / "ops_alerts").glob(".*.tmp"))


# -- the simulator's world shifts -----------------------------------------------------------------
SHIFT_DAY = date(2026, 10, 4)


@pytest.fixture(scope="module")
def worlds(pool):
    base = SimConfig(seed=7, users=800, content_per_day=600)
    last = base.start_date + timedelta(days=5)
    out = {"none": simulate_days(base, pool, base.start_date, last)}
    for kind in ("spam_campaign", "slang"):
        config = SimConfig(seed=7, users=800, content_per_day=600, world_shift=kind, world_shift_from=SHIFT_DAY)
        out[kind] = simulate_days(config, pool, config.start_date, last)
    return out


@pytest.mark.parametrize("kind", ["spam_campaign", "slang"])
def test_days_before_a_shift_are_exactly_the_unshifted_world(worlds, kind):
    from ml.simulator import EVENT_TIME

    for table, frame in worlds["none"].items():
        if table == "media":
            continue  # image files, not rows in time: the content rows compared name them by SHA-256
        before = pl.col(EVENT_TIME[table]).dt.date() < SHIFT_DAY - timedelta(days=1)  # whole cohorts only
        assert worlds[kind][table].filter(before).equals(frame.filter(before)), table


def test_a_shift_is_the_same_for_the_same_seed(pool, worlds):
    config = SimConfig(seed=7, users=800, content_per_day=600, world_shift="spam_campaign", world_shift_from=SHIFT_DAY)
    again = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=5))
    assert all(again[t].equals(worlds["spam_campaign"][t]) for t in again)


def test_the_spam_campaign_is_new_bot_accounts_posting_spam_no_corpus_holds(pool, worlds):
    shifted, base = worlds["spam_campaign"], worlds["none"]
    content = shifted["content"].join(shifted["content_truth"].select("content_id", "true_policy"), on="content_id")
    # Text posts whose text no corpus and no post of the unshifted world holds (the rings' reworded posts are in
    # both worlds; an image post's text is its caption, its corpus text is in the image).
    known = pl.concat([pool["text_hash"], base["content"]["text_hash"]]).implode()
    novel = content.filter((pl.col("media_type") == "text") & ~pl.col("text_hash").is_in(known))
    assert novel["created_at"].dt.date().min() == SHIFT_DAY and (novel["true_policy"] == "spam").all()
    assert novel.height >= 0.15 * content.filter(pl.col("created_at").dt.date() >= SHIFT_DAY).height
    bots = set(novel["author_id"]) - set(base["users"]["user_id"])
    assert bots and bots <= set(shifted["users"]["user_id"])  # every bot lands in users before it posts
    signup = shifted["users"].filter(pl.col("user_id").is_in(list(bots)))
    first_post = novel.group_by("author_id").agg(pl.col("created_at").min())
    assert (
        signup.join(first_post, left_on="user_id", right_on="author_id")
        .filter(pl.col("signup_at") >= pl.col("created_at"))
        .is_empty()
    )


def test_slang_rewrites_only_benign_posts_and_they_stay_benign(worlds):
    shifted, base = worlds["slang"], worlds["none"]
    joined = (
        base["content"]
        .select("content_id", "text")
        .join(shifted["content"].select("content_id", pl.col("text").alias("shifted_text")), on="content_id")
        .join(base["content_truth"].select("content_id", "true_policy", "created_at"), on="content_id")
    )
    changed = joined.filter(pl.col("text") != pl.col("shifted_text"))
    assert changed.height > 100 and (changed["true_policy"] == "benign").all()
    assert (changed["created_at"].dt.date() >= SHIFT_DAY).all()


def test_an_unknown_or_undated_shift_is_refused():
    with pytest.raises(ValueError, match="unknown world shift"):
        SimConfig(world_shift="alien_invasion", world_shift_from=SHIFT_DAY)
    with pytest.raises(ValueError, match="needs the day it starts"):
        SimConfig(world_shift="slang")


def test_a_classifier_trained_before_the_shift_misses_the_campaign_and_flags_the_slang(pool, worlds, tmp_path):
    """The shift is visible the way a real one is: not a flag, but texts the model reads wrongly."""
    from ml.training.content import CONTENT_CLASSIFIER_RECIPE, fit_text_classifier
    from ml.training.dataset import dataset_version
    from ml.training.scorer import Scorer
    from tests.helpers import labelled_training_frame

    frame, _ = labelled_training_frame(pool, seed=11, days=6, rows=2500)
    model = Scorer(
        fit_text_classifier(
            frame, dataset_version(frame), tmp_path, None, CONTENT_CLASSIFIER_RECIPE.ignoring_label_issues()
        )
    )

    def proba(texts: list[str], policy: str) -> np.ndarray:
        scores = model.predict_proba(pl.DataFrame({"text": texts}), None)
        return scores[:, ["benign", *VIOLATING].index(policy)]

    shifted = worlds["spam_campaign"]
    content = shifted["content"].join(shifted["content_truth"].select("content_id", "true_policy"), on="content_id")
    known = pl.concat([pool["text_hash"], worlds["none"]["content"]["text_hash"]]).implode()
    campaign = content.filter(~pl.col("text_hash").is_in(known))["text"].to_list()  # the shift's own posts
    old_spam = content.filter(
        (pl.col("true_policy") == "spam") & pl.col("text_hash").is_in(pool["text_hash"].implode())
    )["text"].to_list()
    assert np.median(proba(campaign, "spam")) < 0.5 * np.median(proba(old_spam, "spam"))

    base, slang = worlds["none"]["content"], worlds["slang"]["content"]
    pairs = (
        base.select("content_id", "text")
        .join(slang.select("content_id", pl.col("text").alias("slang")), on="content_id")
        .filter(pl.col("text") != pl.col("slang"))
    )
    assert np.mean(proba(pairs["slang"].to_list(), "harassment")) > 2 * np.mean(
        proba(pairs["text"].to_list(), "harassment")
    )
