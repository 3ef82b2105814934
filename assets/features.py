"""Feature tables in the lake (group `features`), each with blocking quality checks. Drift is
monitoring's (assets/monitoring.py): against the champion's training reference, not the last build."""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import polars as pl

from assets.campaigns import CAMPAIGNS, stored_signatures
from assets.images import IMAGE_TEXT, image_text_table
from assets.metadata import frame_metadata
from assets.resources import LakehouseResource
from ml.features import build
from ml.features.quality import check_coverage, check_nulls, check_ranges, check_schema
from ml.lake import write_parquet_atomic
from ml.warehouse import query


@dataclass(frozen=True)
class FeatureTable:
    description: str
    reads: tuple[str, ...]
    build: Callable[[dict[str, pl.DataFrame]], pl.DataFrame]


TABLES = {
    "content_features": FeatureTable(
        "Text signals of each content item (length, URL/phone/email/mention counts, casing, repeated "
        "characters, emoji, leetspeak and spaced-out letters) of its text as the classifier reads it (an image "
        "post: caption, then the text OCR read in the image), its surface, link and phone flags, and its image "
        "features (has_image, OCR confidence, the image's share of the text). The hashed n-gram text "
        "representation is computed from the text at training and scoring time.",
        ("content", IMAGE_TEXT),
        lambda raw: build.content_features(raw["content"], raw[IMAGE_TEXT]),
    ),
    "author_features": FeatureTable(
        "The author's history as of each content item's creation time: account age, prior posts, posts in "
        "the last 24 h, reports received, standing enforcements. Nothing after the post leaks in.",
        ("content", "users", "reports", "decisions", "appeals"),
        lambda raw: build.author_features(
            raw["content"], raw["users"], raw["reports"], raw["decisions"], raw["appeals"]
        ),
    ),
    "network_features": FeatureTable(
        "Accounts linked by shared device or IP fingerprints (connected components): component size and "
        "the share already enforced against, as of each content item's creation time. How rings are caught.",
        ("content", "users", "decisions"),
        lambda raw: build.network_features(raw["content"], raw["users"], raw["decisions"]),
    ),
    "campaign_features": FeatureTable(
        "What each post's near-duplicate copies and shared links, phone numbers and e-mail addresses showed before "
        "it was posted (ml/campaigns/features.py): earlier copies, the other accounts behind them and their confirmed "
        "removals, the same through its artifacts, and the removal rate over everything it links to (one hop of "
        "label propagation). Point in time: nothing after the post counts. Texts the campaigns asset signed "
        "(its stored MinHash signatures) are not signed again.",
        ("content", "decisions", "appeals", CAMPAIGNS),
        lambda raw: build.campaign_features(
            raw["content"], raw["decisions"], raw["appeals"], signatures=raw[CAMPAIGNS]
        ),
    ),
}
# Inputs that are not raw tables: the image text table, and the signatures the campaigns asset keeps.
DERIVED = {IMAGE_TEXT: image_text_table, CAMPAIGNS: stored_signatures}
CHECKS = {
    "schema": "The table has exactly the columns and types training and scoring expect (ml/features/build.py).",
    "null_rates": "No column has a null value (the feature code fills every column of every row).",
    "value_ranges": "Every feature with a declared range (ml/features/build.py RANGES) lies inside it.",
    "covers_labelled_content": "Every labelled content item in training_labels has a feature row, so no label "
    "is dropped from the training set for want of features.",
}


def labelled_content_ids(lakehouse: LakehouseResource) -> pl.Series | None:
    """The content ids of training_labels, read from the published marts (declared: published_marts)."""
    marts = lakehouse.lake.marts_db
    if not marts.exists():
        return None
    _, rows = query(marts, "select content_id from training_labels")
    return pl.Series("content_id", [r[0] for r in rows], dtype=pl.Int64)


def feature_asset(name: str, table: FeatureTable) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name="features",
        description=table.description,
        kinds={"polars", "parquet"},
        deps=[*table.reads, "training_labels", "published_marts"],
        check_specs=[dg.AssetCheckSpec(c, asset=name, blocking=True, description=d) for c, d in CHECKS.items()],
    )
    def _feature(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        lake = lakehouse.lake
        raw = {t: DERIVED[t](lake) if t in DERIVED else lake.read_table(t).drop("date") for t in table.reads}
        frame = table.build(raw)
        path = lake.features / name / "part-0.parquet"
        write_parquet_atomic(frame, path)
        outcomes = {
            "schema": check_schema(frame, build.SCHEMAS[name]),
            "null_rates": check_nulls(frame, {}),
            "value_ranges": check_ranges(frame, build.RANGES[name]),
            "covers_labelled_content": check_coverage(frame, raw["content"].height, labelled_content_ids(lakehouse)),
        }
        return dg.MaterializeResult(
            metadata={**frame_metadata(frame), "path": dg.MetadataValue.path(str(path))},
            check_results=[
                dg.AssetCheckResult(
                    check_name=check,
                    passed=o.passed,
                    description=o.message,
                    metadata=o.metadata,
                    severity=dg.AssetCheckSeverity.ERROR,
                )
                for check, o in outcomes.items()
            ],
        )

    return _feature


feature_assets = [feature_asset(name, table) for name, table in TABLES.items()]
