"""The training set, label-noise detection and the models trained on it (group `training`).

Each model asset takes its inputs as real assets and hands a `ModelArtifact` (where the model is,
its dataset version, params and validation metrics) to whatever evaluates it next.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl
from dagster_ray import RayResource

from assets.campaigns import CAMPAIGNS, stored_signatures
from assets.images import IMAGE_TEXT, image_text_table
from assets.metadata import DECLINED, markdown_table
from assets.resources import LakehouseResource, TrainingResource, connect_ray
from assets.scoring import days_bank_matches
from ml.campaigns.links import text_families, text_signatures
from ml.features.build import SCHEMAS
from ml.features.images import image_post_text
from ml.lake import Lake, write_parquet_atomic
from ml.matching.bank_matches import BANK_MATCHES, NO_PDQ_MATCH, bank_match_features
from ml.matching.text import TextMatchParams
from ml.taxonomy import POLICIES
from ml.training.artifacts import ModelArtifact
from ml.training.content import BASELINE_RECIPE, CONTENT_CLASSIFIER_RECIPE, FitPlan, fit_text_classifier
from ml.training.dataset import TrainingSetRef, build_training_set, dataset_version
from ml.training.fit_cache import FitCache
from ml.training.label_noise import training_label_issues
from ml.training.lightgbm_model import LightGBMParams
from ml.training.text_classifier import TextFeatureCache
from ml.warehouse import read_frame


@dataclass(frozen=True)
class LabelIssuesRef:
    """What `label_issues` hands on: where the table is and what it found."""

    path: str
    dataset_version: str
    rows: int
    issues: int
    version: str = ""  # content hash of the table: what fits that down-weight its flags depend on


def fit_plan(training_set: TrainingSetRef, lake: Lake, label_issues: LabelIssuesRef | None = None) -> FitPlan:
    """How this training set's linear fits run: its saved text features, every core, and the fit
    cache keyed by its dataset version (and the label issues' version, for members that read them)."""
    features = (
        TextFeatureCache.load(training_set.text_features)
        if training_set.text_features
        else TextFeatureCache(pl.read_parquet(training_set.path))
    )
    issues_version = label_issues.version if label_issues is not None else None
    return FitPlan(features, FitCache(lake.fit_cache, training_set.version, issues_version or None))


@dg.asset(
    group_name="training",
    kinds={"polars", "parquet"},
    deps=[
        "training_labels",
        "published_marts",
        "content_features",
        "author_features",
        "network_features",
        "campaign_features",
        CAMPAIGNS,
        "content",
        IMAGE_TEXT,
        BANK_MATCHES,
    ],
)
def training_set(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.Output[TrainingSetRef]:
    """Every label (moderator decisions, appeal outcomes, QA gold, reference sets) joined with the platform
    features of its content, split by the bucket of its text's near-duplicate family (a text, its copies and
    its variants never cross splits, whatever their source; MinHash signatures the campaigns asset keeps are
    reused) and, for platform content, by time. Its content hash is the dataset version of every model."""
    lake = lakehouse.lake
    labels = read_frame(lake.marts_db, "select * from training_labels")
    # An image post's label is learnt from what scoring will read: its caption, then the text in its image.
    media = lake.read_table("content").select("content_id", "media_sha256")
    labels = image_post_text(
        labels.join(media, on="content_id", how="left", maintain_order="left"), image_text_table(lake)
    ).drop("media_sha256")
    params = TextMatchParams()
    families = text_families(text_signatures(labels, stored_signatures(lake), params), params)
    feats = {name: pl.read_parquet(lake.features / name / "part-0.parquet") for name in SCHEMAS}
    # The hash-bank matches each item could have met when posted, as scoring reads them (with_bank_matches).
    posted = lake.read_table("content").select("content_id", "created_at")
    days = sorted(posted["created_at"].dt.date().unique())
    bank = bank_match_features(posted, days_bank_matches(lake, days))
    frame, facts = build_training_set(
        labels,
        feats["content_features"],
        feats["author_features"],
        feats["network_features"],
        bank=bank,
        campaign=feats["campaign_features"],
        families=families,
    )
    matched = (pl.col("bank_pdq_distance") < NO_PDQ_MATCH) | (pl.col("bank_text_jaccard") > 0)
    facts["labelled_items_matching_a_bank"] = frame.filter(matched)["content_id"].n_unique()
    version = dataset_version(frame)
    path = lake.features / "training_set" / "part-0.parquet"
    write_parquet_atomic(frame, path)
    # Every distinct text featurised once here, read by every fit downstream (ml/training/text_classifier.py).
    text_features = TextFeatureCache(frame).save(path.with_name("text_features.npz"))
    by_source = (
        frame.group_by("label_source", "split")
        .len()
        .pivot(on="split", index="label_source", values="len")
        .fill_null(0)
        .sort("label_source")
    )
    metadata = {
        "dataset_version": version,
        "dagster/row_count": frame.height,
        **facts,
        "path": dg.MetadataValue.path(str(path)),
        "rows_by_label_source_and_split": dg.MetadataValue.md(markdown_table(by_source)),
    }
    # The dataset version is the data version: a rebuilt but identical training set leaves its models fresh.
    return dg.Output(
        TrainingSetRef(path=str(path), version=version, rows=facts, text_features=str(text_features)),
        data_version=dg.DataVersion(version),
        metadata=metadata,
    )


@dg.asset(group_name="training", kinds={"scikitlearn", "parquet"})
def label_issues(
    context: dg.AssetExecutionContext, training_set: TrainingSetRef, lakehouse: LakehouseResource
) -> LabelIssuesRef:
    """Likely label errors among the training labels, by confident learning (cleanlab) on out-of-fold
    probabilities of the content classifier's recipe (4 folds grouped by text). Flagged platform labels
    count a third in the classifiers' training; QA reviews every flag in `mart_label_issues`. The
    out-of-fold scores are also what the risk model is trained on."""
    plan = fit_plan(training_set, lakehouse.lake)
    issues = training_label_issues(pl.read_parquet(training_set.path), CONTENT_CLASSIFIER_RECIPE, plan)
    path = lakehouse.lake.features / "label_issues" / "part-0.parquet"
    write_parquet_atomic(issues, path)
    sources = pl.read_parquet(training_set.path, columns=["label_id", "label_source"])
    flagged = issues.join(sources, on="label_id").filter(pl.col("is_label_issue"))
    by_source = flagged.group_by("label_source").len().sort("label_source")
    context.add_output_metadata(
        {
            "dagster/row_count": issues.height,
            "label_issues": flagged.height,
            "issue_share": round(flagged.height / max(issues.height, 1), 4),
            "issues_by_label_source": dg.MetadataValue.md(markdown_table(by_source)),
            "path": dg.MetadataValue.path(str(path)),
            **fit_cache_metadata(plan),
        }
    )
    return LabelIssuesRef(str(path), training_set.version, issues.height, flagged.height, dataset_version(issues))


def fit_cache_metadata(plan: FitPlan) -> dict:
    """How many fits the cache saved this step (an unchanged input is not refitted)."""
    cache = plan.cache
    return {"fit_cache_hits": cache.hits, "fit_cache_misses": cache.misses} if cache else {}


def model_metadata(artifact: ModelArtifact) -> dict:
    m = artifact.metrics
    meta = {
        "model_version": artifact.version,
        "dataset_version": artifact.dataset_version,
        "path": dg.MetadataValue.path(artifact.path),
        "params": dg.MetadataValue.json(artifact.params),
    }
    by_policy = m.get("validation_text_only_pr_auc") or m.get("validation_pr_auc") or {}
    meta.update({f"validation_pr_auc/{p}": round(by_policy[p], 4) for p in POLICIES if p in by_policy})
    meta.update(
        {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in m.items()
            if isinstance(v, (int, float)) and k not in meta
        }
    )
    return meta


@dg.asset(group_name="training", kinds={"scikitlearn"})
def content_classifier(
    context: dg.AssetExecutionContext,
    training_set: TrainingSetRef,
    label_issues: LabelIssuesRef,
    lakehouse: LakehouseResource,
) -> ModelArtifact:
    """The content classifier: text only, trained on every labelled text of the train split. Two linear
    members averaged and calibrated per policy: the labels as given (confidence-weighted, with text signals)
    and each text's consensus label; likely label errors on platform labels count a third. It answers
    whenever a request carries no platform context."""
    plan = fit_plan(training_set, lakehouse.lake, label_issues)
    artifact = fit_text_classifier(
        pl.read_parquet(training_set.path),
        training_set.version,
        lakehouse.lake.models,
        pl.read_parquet(label_issues.path),
        CONTENT_CLASSIFIER_RECIPE,
        plan,
    )
    context.add_output_metadata({**model_metadata(artifact), **fit_cache_metadata(plan)})
    return artifact


@dg.asset(group_name="training", kinds={"scikitlearn"})
def baseline_model(
    context: dg.AssetExecutionContext, training_set: TrainingSetRef, lakehouse: LakehouseResource
) -> ModelArtifact:
    """The obvious model every report is measured against: TF-IDF word and character n-grams with logistic
    regression, on the same training texts, every label as given, unweighted."""
    plan = fit_plan(training_set, lakehouse.lake)
    artifact = fit_text_classifier(
        pl.read_parquet(training_set.path), training_set.version, lakehouse.lake.models, None, BASELINE_RECIPE, plan
    )
    context.add_output_metadata({**model_metadata(artifact), **fit_cache_metadata(plan)})
    return artifact


@dg.asset(group_name="training", kinds={"pytorch", "ray"}, output_required=False)
def text_model(
    context: dg.AssetExecutionContext,
    training_set: TrainingSetRef,
    label_issues: LabelIssuesRef,
    ray_cluster: RayResource,
    lakehouse: LakehouseResource,
    training: TrainingResource,
) -> Iterator:
    """The deep text model, a content-classifier candidate trained with Ray's TorchTrainer on the same rows
    (text only). Profile `compact` (CPU default): a wide-and-deep net over hashed n-grams. Profile `minilm`
    (default when the cluster has a GPU): the packaged all-MiniLM-L6-v2 encoder, fine-tuned end to end.
    Trained when the Ray cluster has a GPU or TRUSTLAKE_TEXT_MODEL_TRAINING=on asks for it; otherwise the step logs why
    and materializes nothing (the last trained model stays), and `text_evaluation` is skipped."""
    from ml.training import fit  # PyTorch: imported by the steps that train, not by every process
    from ml.training.minilm_model import MiniLMParams
    from ml.training.text_model import cluster_has_gpu
    from ml.training.text_model_params import TextModelParams, resolve_text_profile, why_not_trained

    connect_ray(ray_cluster, context)
    gpu = cluster_has_gpu()
    reason = why_not_trained(training.text_model, gpu)
    if reason:
        context.log.warning(f"text_model not trained this run: {reason}")
        # Recorded, so the UI says why and `trustlake run` counts it as up to date until its inputs change.
        yield dg.AssetObservation(asset_key="text_model", metadata={DECLINED: reason})
        return
    storage = training.ray_storage()
    frame, issues = pl.read_parquet(training_set.path), pl.read_parquet(label_issues.path)
    profile = resolve_text_profile(training.text_profile, gpu)
    if profile == "minilm":
        artifact = fit.fit_minilm(
            frame,
            issues,
            training_set.version,
            lakehouse.lake.models,
            storage,
            MiniLMParams(cpus_per_worker=training.text_cpus_per_worker),
        )
    else:
        params = TextModelParams(epochs=training.text_epochs, cpus_per_worker=training.text_cpus_per_worker)
        artifact = fit.fit_text_model(frame, issues, training_set.version, lakehouse.lake.models, storage, params)
    yield dg.Output(artifact, metadata=model_metadata(artifact))


@dg.asset(group_name="training", kinds={"lightgbm", "ray"})
def risk_model(
    context: dg.AssetExecutionContext,
    training_set: TrainingSetRef,
    label_issues: LabelIssuesRef,
    content_classifier: ModelArtifact,
    ray_cluster: RayResource,
    lakehouse: LakehouseResource,
    training: TrainingResource,
) -> ModelArtifact:
    """The risk model: multiclass LightGBM over the content classifier's out-of-fold scores plus behaviour,
    network and context features of platform content, trained data-parallel by long-lived Ray actors sized to
    the cluster. With its content classifier it is the pair that is evaluated, promoted and served together."""
    from ml.training.risk import fit_risk_model  # LightGBM and Ray: imported by the step that trains

    connect_ray(ray_cluster, context)
    params = LightGBMParams(
        num_workers=training.lightgbm_workers, threads_per_worker=training.lightgbm_threads_per_worker
    )
    artifact = fit_risk_model(
        pl.read_parquet(training_set.path),
        pl.read_parquet(label_issues.path),
        content_classifier,
        lakehouse.lake.models,
        params,
    )
    context.add_output_metadata(model_metadata(artifact))
    return artifact
