"""What the risk model's campaign features add, and whether it holds on a ring style it never trained on,
measured on a home `trustlake run` built (issue 19, items 3 and 5).

    .venv/bin/python bench/campaign_pair.py [--home .trustlake] [--seeds 3] [--held-out sleeper]

Reads the run's training set (with its point-in-time campaign features), its label issues (the classifier's
out-of-fold scores, which the risk model trains on), the content classifier the latest risk model pairs, and
the raw lake. Fits the risk model as the pipeline does (its LightGBM parameters and context dropout; plain
LightGBM, one process), on the same rows, for `--seeds` seeds, three ways: without the campaign features,
with them (the pipeline's pair), and with them but with every training post of the `--held-out` ring style's
accounts left out (ml/ring_campaigns.py: as leave-one-source-out does for corpora). Reported on the simulated
test split, macro PR-AUC with the paired-bootstrap 95% interval of each difference against the classifier
alone: overall, on the posts of ring campaigns, and on each ring style's campaign posts. The simulator's truth
(campaigns, rings and their styles) is read here only to slice rows, never to train. Writes
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
from ml.world import RING_STYLES, ring_styles


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
    parser.add_argument("--held-out", default="sleeper", choices=RING_STYLES)
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
    rings = pl.read_parquet(lake.ground_truth / "user_truth" / "date=*" / "*.parquet").select(
        author_id="user_id", ring_style=pl.col("ring_id").map_batches(ring_styles)
    )
    platform = platform.join(truth, on="content_id", how="left").join(rings, on="author_id", how="left")
    train = platform.filter(pl.col("split") == "train")
    val, test = platform.filter(pl.col("split") == "validation"), platform.filter(pl.col("split") == "test")
    oof = train.select("label_id").join(issues.select("label_id", *PROBA_OOF), on="label_id", how="left")
    text = Scorer(classifier)
    p_val_text = text.predict_proba(val.select("text"))
    p_test_text = text.predict_proba(test.select("text"))
    y, y_val, y_test = label_array(train), label_array(val), label_array(test)
    campaign = (test["campaign_id"].fill_null(-1) >= 0).to_numpy()
    slices = {"overall": np.ones(test.height, dtype=bool), "ring_campaign_posts": campaign}
    for style in RING_STYLES:
        slices[f"{style}_campaign_posts"] = campaign & (test["ring_style"].fill_null("") == style).to_numpy()
    # Held out: every training and validation post of the held-out style's ring accounts.
    kept = (train["ring_style"].fill_null("") != args.held_out).to_numpy()
    kept_val = (val["ring_style"].fill_null("") != args.held_out).to_numpy()

    without = tuple(c for c in DENSE_COLUMNS if c not in FEATURES)
    variants = {
        "pair_without_campaign_features": (without, np.ones_like(kept), np.ones_like(kept_val)),
        "pair": (DENSE_COLUMNS, np.ones_like(kept), np.ones_like(kept_val)),
        f"pair_{args.held_out}_held_out": (DENSE_COLUMNS, kept, kept_val),
    }
    runs = []
    for seed in range(args.seeds):
        params = replace(LightGBMParams(), seed=42 + seed)
        masked = mask_context(train, CONTEXT_DROPOUT, params.seed)
        # The dropout hides the campaign features with the rest of the context on the same rows.
        hidden = masked["account_age_days"].is_null() & train["account_age_days"].is_not_null()
        masked = masked.with_columns(pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c) for c in FEATURES)
        x_oof = oof.select(PROBA_OOF).to_numpy()
        probas = {"classifier": p_test_text}
        for name, (columns, rows, val_rows) in variants.items():
            booster = lightgbm_model.train_local(
                risk_features(masked.filter(rows), x_oof[rows], columns),
                y[rows],
                risk_features(val.filter(val_rows), p_val_text[val_rows], columns),
                y_val[val_rows],
                params,
            )
            probas[name] = booster.predict(risk_features(test, p_test_text, columns))
        run = {"seed": params.seed}
        for slice_name, rows in slices.items():
            run[slice_name] = {
                "rows": int(rows.sum()),
                **{k: macro(y_test[rows], p[rows]) for k, p in probas.items()},
                **{
                    f"{k}_vs_classifier": compared(y_test[rows], p[rows], p_test_text[rows])
                    for k, p in probas.items()
                    if k != "classifier"
                },
            }
        runs.append(run)
        print(run)
    write_report(
        "campaign_pair",
        {
            "home": str(args.home),
            "risk_model": risk.version,
            "content_classifier": classifier.version,
            "held_out_style": args.held_out,
            "held_out_training_rows": int((~kept).sum()),
            "test_rows": test.height,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
