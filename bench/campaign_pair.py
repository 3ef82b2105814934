"""What campaign features add to the risk model, measured on a home `trustlake run` built (issue 19, item 3).

    .venv/bin/python bench/campaign_pair.py [--home .trustlake] [--seeds 3]

Reads the run's training set, its label issues (the classifier's out-of-fold scores, which the risk model
trains on), the content classifier the latest risk model pairs, and the raw lake. Computes every platform
post's point-in-time campaign features (ml/campaigns/features.py: earlier copies, the accounts that posted
them, shared links, numbers and addresses, and the confirmed removals reached through them), then fits the
risk model as the pipeline does (its LightGBM parameters and context dropout; plain LightGBM, one process)
with and without them (the pipeline's dense columns, less the campaign ones), on the same rows, for
`--seeds` seeds. Reported on the simulated test split, macro
PR-AUC: the classifier alone, the pair as trained today, the pair with campaign features, each with the
paired-bootstrap 95% interval of its difference, overall and on the posts of ring campaigns (the
simulator's truth, read here only to slice the test rows, never to train). Writes
bench/results/campaign_pair.json.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from report import write_report  # bench/report.py, beside this script

from ml.campaigns.features import FEATURES, campaign_features, confirmed_removals
from ml.campaigns.links import post_artifacts, text_neighbours, text_signatures
from ml.evaluation.generalisation import macro_delta_interval
from ml.lake import Lake
from ml.matching.text import TextMatchParams
from ml.taxonomy import VIOLATING
from ml.training import lightgbm_model
from ml.training.artifacts import ModelArtifact
from ml.training.dataset import label_array, platform_rows
from ml.training.lightgbm_model import LightGBMParams
from ml.training.matrix import DENSE_COLUMNS, mask_context, risk_features
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy
from ml.training.risk import CONTEXT_DROPOUT, PROBA_OOF
from ml.training.scorer import Scorer


def campaign_columns(lake: Lake, content_ids: pl.Series) -> pl.DataFrame:
    """The campaign features of the given posts, point in time, over every post of the raw lake."""
    content = lake.read_table("content").drop("date")
    params = TextMatchParams()
    neighbours = text_neighbours(text_signatures(content.select("text_hash", "text"), None, params), params)
    removals = confirmed_removals(lake.read_table("decisions").drop("date"), lake.read_table("appeals").drop("date"))
    asked = content.filter(pl.col("content_id").is_in(content_ids.implode()))
    return campaign_features(asked, content, neighbours, post_artifacts(content), removals)


def macro(y: np.ndarray, p: np.ndarray) -> float:
    return round(float(macro_pr_auc(pr_auc_by_policy(y, p))), 4)


def compared(y: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> dict:
    low, high = macro_delta_interval(y, ours, theirs, set(VIOLATING))
    return {"delta": round(macro(y, ours) - macro(y, theirs), 4), "interval_95": [round(low, 4), round(high, 4)]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=Path(".trustlake"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    lake = Lake(args.home)
    training_set = pl.read_parquet(lake.features / "training_set" / "part-0.parquet")
    issues = pl.read_parquet(lake.features / "label_issues" / "part-0.parquet")
    # The latest pair trained (from the training set and label issues on disk), and its classifier.
    risk = ModelArtifact.read(max(lake.models.glob("risk_model-*/artifact.json")).parent)
    classifier = ModelArtifact.read(lake.models / risk.params["content_classifier"])

    platform = platform_rows(training_set)
    if FEATURES[0] not in platform.columns:  # a training set built before the risk model read them
        platform = platform.join(campaign_columns(lake, platform["content_id"].unique()), on="content_id", how="left")
    truth = pl.read_parquet(lake.ground_truth / "content_truth" / "date=*" / "*.parquet").select(
        "content_id", "campaign_id"
    )
    platform = platform.join(truth, on="content_id", how="left")
    train = platform.filter(pl.col("split") == "train")
    val, test = platform.filter(pl.col("split") == "validation"), platform.filter(pl.col("split") == "test")
    oof = train.select("label_id").join(issues.select("label_id", *PROBA_OOF), on="label_id", how="left")
    text = Scorer(classifier)
    p_val_text = text.predict_proba(val.select("text"))
    p_test_text = text.predict_proba(test.select("text"))
    y, y_val, y_test = label_array(train), label_array(val), label_array(test)
    campaign_rows = (test["campaign_id"].fill_null(-1) >= 0).to_numpy()

    without = tuple(c for c in DENSE_COLUMNS if c not in FEATURES)

    def design(frame: pl.DataFrame, proba: np.ndarray, with_campaigns: bool) -> np.ndarray:
        return risk_features(frame, proba, DENSE_COLUMNS if with_campaigns else without)

    runs = []
    for seed in range(args.seeds):
        params = replace(LightGBMParams(), seed=42 + seed)
        masked = mask_context(train, CONTEXT_DROPOUT, params.seed)
        # The dropout hides the campaign features with the rest of the context on the same rows.
        hidden = masked["account_age_days"].is_null() & train["account_age_days"].is_not_null()
        masked = masked.with_columns(pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c) for c in FEATURES)
        probas = {}
        for name, extra in (("pair", False), ("pair_with_campaigns", True)):
            booster = lightgbm_model.train_local(
                design(masked, oof.select(PROBA_OOF).to_numpy(), extra),
                y,
                design(val, p_val_text, extra),
                y_val,
                params,
            )
            probas[name] = booster.predict(design(test, p_test_text, extra))
        runs.append(
            {
                "seed": params.seed,
                "overall": {
                    "classifier": macro(y_test, p_test_text),
                    **{k: macro(y_test, p) for k, p in probas.items()},
                    "pair_with_campaigns_vs_classifier": compared(y_test, probas["pair_with_campaigns"], p_test_text),
                    "pair_vs_classifier": compared(y_test, probas["pair"], p_test_text),
                    "with_vs_without_campaigns": compared(y_test, probas["pair_with_campaigns"], probas["pair"]),
                },
                "ring_campaign_posts": {
                    "rows": int(campaign_rows.sum()),
                    "classifier": macro(y_test[campaign_rows], p_test_text[campaign_rows]),
                    **{k: macro(y_test[campaign_rows], p[campaign_rows]) for k, p in probas.items()},
                    "pair_with_campaigns_vs_classifier": compared(
                        y_test[campaign_rows], probas["pair_with_campaigns"][campaign_rows], p_test_text[campaign_rows]
                    ),
                },
            }
        )
        print(runs[-1])
    write_report(
        "campaign_pair",
        {
            "home": str(args.home),
            "risk_model": risk.version,
            "content_classifier": classifier.version,
            "test_rows": test.height,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
