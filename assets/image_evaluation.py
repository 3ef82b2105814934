"""`image_and_matching_evaluation` (group `image_evaluation`): how the image and known-bad paths do on
the lake's own images and texts (ml/evaluation/matching.py), shown as metadata and a plot.

Not part of `trustlake run`: re-uploading every text image under eight evasions and rendering a few
thousand benign images costs a minute or two of CPU, which the main job's budget has no room for.
`image_evaluation_job` runs it (weekly by schedule, or from the UI or `dagster job launch`).
"""

import json
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from assets.metadata import image_markdown, markdown_table, rounded
from assets.resources import LakehouseResource
from ml.evaluation import matching
from ml.evaluation.plots import radius_plot
from ml.features.images import IMAGE_TEXT, image_text_table
from ml.lake import write_text_atomic
from ml.matching.threshold import DEFAULT_RADIUS, THREATEXCHANGE_THRESHOLD
from ml.registry import Registry
from ml.taxonomy import VIOLATING
from ml.training.artifacts import ModelArtifact
from ml.training.scorer import Scorer

BENIGN_IMAGES = 2_000  # the false-match denominator: "a few thousand distinct benign images"
NEAR_DUPLICATE_TEXTS = 1_200  # spam and scam texts: 600 copies and 600 distinct pairs


def _champion_classifier(lake) -> Scorer:
    registry = Registry(lake.models)
    entry = registry.champion()
    if entry is None:
        raise dg.Failure(
            "no champion yet: the OCR cost is measured with the champion's content classifier (retrain_job)"
        )
    champion = Scorer(ModelArtifact.read(registry.artifact_dir(entry)))
    return champion.classifier or champion


@dg.asset(
    group_name="image_evaluation",
    kinds={"python"},
    deps=[IMAGE_TEXT, "content", "deployed_model"],
    description="The image and known-bad paths measured on the lake's images and texts: OCR character error rate by "
    "upload perturbation; the champion classifier's macro PR-AUC on image posts through OCR against the same texts "
    "as text; PDQ recall per evasion and the false-match rate of distinct benign images per radius; text "
    "near-duplicate recall and precision on campaign variants.",
)
def image_and_matching_evaluation(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lake = lakehouse.lake
    try:
        truth = lake.read_table("image_truth", root=lake.ground_truth)
        content_truth = lake.read_table("content_truth", root=lake.ground_truth)
    except (FileNotFoundError, pl.exceptions.ComputeError) as exc:
        raise dg.Failure(
            f"this evaluation measures against the simulator's ground truth (lake/ground_truth), which this home "
            f"does not have: {exc}"
        ) from exc
    read = image_text_table(lake)
    content = lake.read_table("content").filter(pl.col("media_type") == "image")

    cer = matching.ocr_error_by_perturbation(truth, read)
    cost = matching.ocr_cost(_champion_classifier(lake).predict_proba, truth, read, content_truth)

    originals = matching.original_text_images(truth, content)
    images = matching.decode_all([lake.media_file(p) for p in originals["media_path"]])
    texts = lake.read_table("content").join(content_truth.select("content_id", "true_policy"), on="content_id")
    benign_texts = texts.filter(pl.col("true_policy") == "benign")["text"].unique(maintain_order=True).to_list()
    radii = matching.pdq_evaluation(images, matching.benign_images(BENIGN_IMAGES, benign_texts))
    in_lake = matching.lake_reupload_recall(truth, read)

    spam = texts.filter(pl.col("true_policy").is_in(["spam", "scam"]))["text"].unique(maintain_order=True)
    near = matching.near_duplicate_evaluation(spam.head(NEAR_DUPLICATE_TEXTS).to_list())

    out = lake.evaluations / "image_matching"
    plot = radius_plot(
        radii.table, DEFAULT_RADIUS, out / "pdq_radius.png", "PDQ: re-upload recall and benign false matches"
    )
    at = radii.table.filter(pl.col("radius") == DEFAULT_RADIUS).row(0, named=True)
    at_te = radii.table.filter(pl.col("radius") == THREATEXCHANGE_THRESHOLD).row(0, named=True)
    text_at = near.filter(pl.col("threshold") == 0.5).row(0, named=True)
    summary = {
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ocr_cer_by_perturbation": cer.to_dicts(),
        "ocr_cost": {"posts": cost.posts, "as_text": cost.as_text, "through_ocr": cost.through_ocr},
        "pdq": {
            "radius": DEFAULT_RADIUS,
            "banked": radii.bank_size,
            "benign": radii.benign,
            "table": radii.table.to_dicts(),
        },
        "pdq_reuploads_in_lake": in_lake.to_dicts(),
        "text_near_duplicates": near.to_dicts(),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str))
    context.log.info(
        f"image evaluation: OCR CER {matching.overall_cer(cer):.3f}; classifier macro PR-AUC as text {cost.macro_as_text:.3f}, "
        f"through OCR {cost.macro_through_ocr:.3f}; PDQ at {DEFAULT_RADIUS}: worst evasion recall {at['recall_min']:.3f}, "
        f"benign false-match rate {at['false_match_rate']:.4f}; text copies recall {text_at['recall']:.3f}"
    )
    recall = pl.DataFrame(
        {
            "evasion": [c.removeprefix("recall_") for c in radii.table.columns if c.startswith("recall_")],
            f"recall at {DEFAULT_RADIUS}": [at[c] for c in radii.table.columns if c.startswith("recall_")],
            f"recall at {THREATEXCHANGE_THRESHOLD}": [at_te[c] for c in radii.table.columns if c.startswith("recall_")],
        }
    )
    cost_table = pl.DataFrame(
        {
            "policy": list(VIOLATING),
            "as text": [cost.as_text[p] for p in VIOLATING],
            "through OCR": [cost.through_ocr[p] for p in VIOLATING],
        }
    )
    return dg.MaterializeResult(
        metadata={
            "ocr_cer_mean": rounded(matching.overall_cer(cer)),
            "ocr_cer_by_perturbation": dg.MetadataValue.md(markdown_table(cer)),
            "ocr_cost_posts": cost.posts,
            "classifier_macro_pr_auc_as_text": rounded(cost.macro_as_text),
            "classifier_macro_pr_auc_through_ocr": rounded(cost.macro_through_ocr),
            "ocr_cost_by_policy": dg.MetadataValue.md(markdown_table(cost_table)),
            "pdq_radius": DEFAULT_RADIUS,
            "pdq_banked_originals": radii.bank_size,
            "pdq_benign_images": radii.benign,
            "pdq_recall_min": rounded(at["recall_min"]),
            "pdq_false_match_rate": rounded(at["false_match_rate"], 5),
            "pdq_recall_by_evasion": dg.MetadataValue.md(markdown_table(recall)),
            "pdq_reuploads_in_lake": dg.MetadataValue.md(markdown_table(in_lake)),
            "pdq_radius_plot": image_markdown(str(plot), "PDQ recall per evasion and benign false matches by radius"),
            "text_near_duplicates": dg.MetadataValue.md(markdown_table(near)),
            "text_recall_at_0_5": rounded(text_at["recall"]),
            "text_precision_at_0_5": rounded(text_at["precision"]),
            "path": dg.MetadataValue.path(str(out)),
        }
    )
