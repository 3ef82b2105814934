"""Model quality on text and sources never trained on: one table for champion, candidates, baseline.

    .venv/bin/python bench/quality.py [--encoder-texts 2000]

Reads the latest training run in TRUSTLAKE_HOME (run `make run` first): every model's evaluation
(evaluation.json beside its artifact) gives the simulated test split, QA gold, the text-only
held-out set and every leave-one-source-out set, per policy. Also measured here, never in the
pipeline: label-issue detection precision and recall against the simulator's ground truth (the
true policy of each platform content item; reference labels have no ground truth), and the
all-MiniLM-L6-v2 encoder's throughput on this machine (what a `text_embeddings` asset would cost).
Writes bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl
from report import write_report  # bench/report.py, beside this script

from ml.evaluation.results import ClassifierEvaluation, PairEvaluation, SetMetrics, read_evaluation
from ml.lake import Lake
from ml.registry import Registry
from ml.taxonomy import VIOLATING
from orchestration.settings import Settings


def latest(models: Path, kind: str) -> ClassifierEvaluation | PairEvaluation | None:
    runs = sorted(p for p in models.glob(f"{kind}-*") if (p / "evaluation.json").exists())
    return read_evaluation(runs[-1] / "evaluation.json") if runs else None


def set_rows(name: str, set_name: str, metrics: SetMetrics | None) -> list[dict]:
    """Per-policy and macro rows of one model on one set (none when the set was not measured)."""
    if metrics is None:
        return []
    return [
        *(
            {"model": name, "set": set_name, "policy": p, "pr_auc": m.pr_auc, "roc_auc": m.roc_auc}
            for p, m in metrics.policies.items()
            if p in VIOLATING
        ),
        {
            "model": name,
            "set": set_name,
            "policy": "macro",
            "pr_auc": metrics.macro_pr_auc,
            "roc_auc": metrics.macro_roc_auc,
        },
    ]


def classifier_rows(name: str, ev: ClassifierEvaluation, baseline: bool = False) -> list[dict]:
    """A content classifier's text-only, QA-gold and leave-one-source-out rows (or its baseline's)."""
    rows = set_rows(name, "text-only held-out", ev.baseline_text_only if baseline else ev.text_only)
    if not baseline:
        rows += set_rows(name, "QA gold (text only)", ev.qa_gold_text_only)
    for s in ev.held_out_sources or ():
        rows += set_rows(name, f"held-out source {s.source}", s.baseline if baseline else s.candidate)
    return rows


def pair_rows(name: str, ev: PairEvaluation) -> list[dict]:
    return set_rows(name, "simulated test", ev.test) + set_rows(name, "QA gold", ev.qa_gold)


def label_issue_truth(lake: Lake) -> dict:
    """Precision and recall of flagged platform labels against the simulator's true policies."""
    issues = pl.read_parquet(lake.features / "label_issues" / "part-0.parquet")
    truth = pl.read_parquet(str(lake.ground_truth / "content_truth" / "date=*" / "*.parquet"))
    platform = issues.filter(pl.col("label_id").str.starts_with("content:")).with_columns(
        pl.col("label_id").str.strip_prefix("content:").cast(pl.Int64).alias("content_id")
    )
    joined = platform.join(truth.select("content_id", "true_policy"), on="content_id")
    wrong = joined["given_label"] != joined["true_policy"]
    flagged = joined["is_label_issue"]
    return {
        "platform_labels": joined.height,
        "wrong_labels": int(wrong.sum()),
        "flagged": int(flagged.sum()),
        "precision": round(float((wrong & flagged).sum() / max(flagged.sum(), 1)), 3),
        "recall": round(float((wrong & flagged).sum() / max(wrong.sum(), 1)), 3),
        "suggested_label_right_when_flagged": round(
            float(
                (
                    joined.filter(flagged & wrong)["suggested_label"] == joined.filter(flagged & wrong)["true_policy"]
                ).mean()
                or 0.0
            ),
            3,
        ),
    }


def encoder_speed(lake: Lake, n: int) -> dict:
    """Texts/s of all-MiniLM-L6-v2 mean-pooled embeddings on this machine: real texts, batches of 64,
    2 threads, inference mode, in random order and sorted by length (less padding), fp32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ml.training.minilm_model import encoder_dir

    texts = pl.read_parquet(str(lake.reference / "*" / "*.parquet"))["text"].sample(n=n, seed=0).to_list()
    tok = AutoTokenizer.from_pretrained(str(encoder_dir()), local_files_only=True)
    model = AutoModel.from_pretrained(str(encoder_dir()), local_files_only=True).eval()
    torch.set_num_threads(2)
    out = {"texts": n, "threads": 2, "max_length": 128}
    for order, batch in (("random_order", texts), ("sorted_by_length", sorted(texts, key=len))):
        started = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, n, 64):
                enc = tok(batch[i : i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
                model(**enc)
        out[f"{order}_texts_per_second"] = round(n / (time.perf_counter() - started), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder-texts", type=int, default=2000, help="0 skips the encoder measurement")
    args = parser.parse_args()
    lake = Lake(Settings.from_env().home)
    champion = Registry(lake.models).champion()
    rows: list[dict] = []
    classifier = latest(lake.models, "content_classifier")
    if classifier:
        rows += classifier_rows("content_classifier", classifier)
        rows += classifier_rows("baseline", classifier, baseline=True)
    text = latest(lake.models, "text_model")
    if text:
        rows += classifier_rows("text_model", text)
    pair = latest(lake.models, "risk_model")
    if pair:
        rows += pair_rows("risk_model (pair)", pair)
        rows += set_rows("content_classifier alone", "simulated test", pair.classifier_alone_test)
    if champion:
        ev = read_evaluation(Registry(lake.models).artifact_dir(champion) / "evaluation.json")
        name = f"champion {champion.version}"
        if isinstance(ev, PairEvaluation):
            rows += pair_rows(name, ev) + classifier_rows(name, ev.classifier)
        else:
            rows += classifier_rows(name, ev)
    table = pl.DataFrame(rows).with_columns(pl.col("pr_auc", "roc_auc").round(3))
    with pl.Config(tbl_rows=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
        print(table.pivot(on="policy", index=["set", "model"], values="pr_auc").sort("set", "model"))
    report = {"per_policy": rows, "label_issues_vs_truth": label_issue_truth(lake)}
    if args.encoder_texts:
        report["minilm_encoder"] = encoder_speed(lake, args.encoder_texts)
    write_report("quality", report, summary={k: v for k, v in report.items() if k != "per_policy"})


if __name__ == "__main__":
    main()
