"""The training set and the three models trained on it (group `training`).

Each model asset takes the training set as an input and hands a `ModelArtifact` (where the
model is, its dataset version, params and test metrics) to whatever evaluates it next.
"""

import dagster as dg
import polars as pl

from ml.features.build import SCHEMAS
from ml.lake import write_parquet_atomic
from ml.taxonomy import POLICIES
from ml.training import fit
from ml.training.artifacts import ModelArtifact
from ml.training.dataset import TrainingSetRef, build_training_set, dataset_version
from ml.training.lightgbm_model import LightGBMParams
from ml.training.minilm_model import MiniLMParams
from ml.training.text_model import TextModelParams, cluster_has_gpu, resolve_text_profile
from ml.warehouse import read_frame
from orchestration.ray_resource import RayResource
from orchestration.resources import LakehouseResource, TrainingResource


@dg.asset(
    group_name="training",
    kinds={"polars", "parquet"},
    deps=["training_labels", "published_marts", "content_features", "author_features", "network_features"],
)
def training_set(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> TrainingSetRef:
    """`training_labels` joined with every feature table, split by time (train on the earliest days,
    validate and test on the latest) and by text, so no text or its duplicates crosses a split.
    Its content hash is the dataset version recorded on every model trained from it."""
    lake = lakehouse.lake
    labels = read_frame(lake.marts_db, "select * from training_labels")
    feats = {name: pl.read_parquet(lake.features / name / "part-0.parquet") for name in SCHEMAS}
    frame, facts = build_training_set(labels, feats["content_features"], feats["author_features"],
                                      feats["network_features"])
    version = dataset_version(frame)
    path = lake.features / "training_set" / "part-0.parquet"
    write_parquet_atomic(frame, path)
    by_split = frame.group_by("split", "label").len().pivot(on="label", index="split", values="len").fill_null(0)
    context.add_output_metadata({
        "dataset_version": version, "dagster/row_count": frame.height, **facts,
        "path": dg.MetadataValue.path(str(path)),
        "labels_by_split": dg.MetadataValue.md(_markdown(by_split)),
    })
    return TrainingSetRef(path=str(path), version=version, rows=facts)


def _markdown(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    return head + "".join("\n| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows())


def model_metadata(artifact: ModelArtifact) -> dict:
    m = artifact.metrics
    meta = {
        "model_version": artifact.version, "dataset_version": artifact.dataset_version,
        "path": dg.MetadataValue.path(artifact.path), "params": dg.MetadataValue.json(artifact.params),
        "temperature": artifact.temperature,
        "test_macro_pr_auc": m["test_macro_pr_auc"], "validation_macro_pr_auc": m["validation_macro_pr_auc"],
    }
    meta.update({f"test_pr_auc/{p}": m["test_pr_auc"][p] for p in POLICIES})
    meta.update({k: v for k, v in m.items() if isinstance(v, (int, float)) and k not in meta})
    return meta


@dg.asset(group_name="training", kinds={"lightgbm", "ray"})
def lightgbm_model(context: dg.AssetExecutionContext, training_set: TrainingSetRef, ray_cluster: RayResource,
                   lakehouse: LakehouseResource, training: TrainingResource) -> ModelArtifact:
    """One multiclass LightGBM model over all policies on [platform context | hashed n-grams],
    trained data-parallel with Ray Train V2 and early stopping on the validation split."""
    storage = ray_cluster.connect()
    params = LightGBMParams(num_workers=training.lightgbm_workers,
                            threads_per_worker=training.lightgbm_threads_per_worker)
    artifact = fit.fit_lightgbm(pl.read_parquet(training_set.path), training_set.version, lakehouse.lake.models,
                                storage, params)
    context.add_output_metadata(model_metadata(artifact))
    return artifact


@dg.asset(group_name="training", kinds={"pytorch", "ray"})
def text_model(context: dg.AssetExecutionContext, training_set: TrainingSetRef, ray_cluster: RayResource,
               lakehouse: LakehouseResource, training: TrainingResource) -> ModelArtifact:
    """The deep text model, trained with Ray's TorchTrainer on GPU when the cluster has one.
    Profile `compact` (CPU default): a wide-and-deep net over hashed n-gram embeddings plus
    platform context. Profile `minilm` (GPU default): the packaged all-MiniLM-L6-v2 encoder,
    fine-tuned, plus platform context."""
    storage = ray_cluster.connect()
    frame = pl.read_parquet(training_set.path)
    profile = resolve_text_profile(training.text_profile, cluster_has_gpu())
    if profile == "minilm":
        artifact = fit.fit_minilm(frame, training_set.version, lakehouse.lake.models, storage,
                                  MiniLMParams(cpus_per_worker=training.text_cpus_per_worker))
    else:
        params = TextModelParams(epochs=training.text_epochs, cpus_per_worker=training.text_cpus_per_worker)
        artifact = fit.fit_text_model(frame, training_set.version, lakehouse.lake.models, storage, params)
    context.add_output_metadata(model_metadata(artifact))
    return artifact


@dg.asset(group_name="training", kinds={"scikitlearn"})
def baseline_model(context: dg.AssetExecutionContext, training_set: TrainingSetRef,
                   lakehouse: LakehouseResource) -> ModelArtifact:
    """TF-IDF word and character n-grams with logistic regression, on the same split: every
    report says how far the real models are above the obvious one."""
    artifact = fit.fit_baseline(pl.read_parquet(training_set.path), training_set.version, lakehouse.lake.models)
    context.add_output_metadata(model_metadata(artifact))
    return artifact
