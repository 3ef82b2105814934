"""What the pipeline reads from image posts (group `images`): `image_text`, each image read once ever.

`images_assets` makes it over the platform's days, which the deployment decides: orchestration/definitions.py
passes them in.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_ray import RayResource

from assets.metadata import add_partition_metadata, partition_days, rounded, table_schema
from assets.resources import LakehouseResource, connect_ray
from ml.features.images import IMAGE_TEXT, RAY_MIN_IMAGES, image_text_table, images_to_read, read_images
from ml.lake import Lake

__all__ = ["IMAGE_TEXT", "image_text_table", "images_assets"]


def posted_images(lake: Lake, days: list) -> pl.DataFrame:
    """The distinct image files posted on `days`: created day, media_sha256, media_path."""
    content = lake.read_table("content")
    return (
        content.filter(pl.col("media_type") == "image", pl.col("created_at").dt.date().is_between(days[0], days[-1]))
        .select(pl.col("created_at").dt.date().alias("day"), "media_sha256", "media_path")
        .unique(["day", "media_sha256"])
        .sort("day", "media_sha256")
    )


def image_text(context: dg.AssetExecutionContext, ray_cluster: RayResource, lakehouse: LakehouseResource):
    """The text in every image posted (OCR, rapidocr's packaged PP-OCR model, on Ray actors) and its PDQ
    hashes, one row per distinct image file: text, OCR confidence, lines, seconds, PDQ codes and quality,
    or why the file is not an image. Cached by the file's SHA-256: an image already read on any day is
    never read again, so a rebuilt day reads nothing and a new day reads only its new images. Fewer than
    RAY_MIN_IMAGES new images are read in this process (ml/features/images.py: sooner than Ray starts)."""
    lake = lakehouse.lake
    days = partition_days(context)
    posted = posted_images(lake, days)
    known, new = images_to_read(posted, image_text_table(lake))
    on_ray = new.height >= RAY_MIN_IMAGES
    if on_ray:
        connect_ray(ray_cluster, context)
    read = read_images(
        [lake.media_file(p) for p in new["media_path"]],
        new["media_sha256"].to_list(),
        new["media_path"].to_list(),
        datetime.now(UTC).replace(tzinfo=None),
        on_ray=on_ray,
    )
    table = pl.concat([known, read])
    distinct = posted["media_sha256"].n_unique()
    context.log.info(
        f"image_text: {distinct} distinct image(s) posted in {len(days)} day(s); "
        f"read {read.height} new ({'on Ray' if on_ray else f'in this process: fewer than {RAY_MIN_IMAGES}'}), "
        f"{distinct - read.height} already read"
    )
    for day in days:
        shas = posted.filter(pl.col("day") == day)["media_sha256"]
        rows = table.filter(pl.col("media_sha256").is_in(shas.implode())).sort("media_sha256")
        lake.write_partition(IMAGE_TEXT, day, rows, root=lake.features)
        add_partition_metadata(
            context,
            day,
            {"dagster/row_count": rows.height, "images_read": new.filter(pl.col("day") == day).height},
        )
    rejected = read.filter(pl.col("rejected") != "")
    if rejected.height:
        context.log.warning(
            f"image_text: {rejected.height} image file(s) could not be read: "
            + ", ".join(f"{r['media_path']} ({r['rejected']})" for r in rejected.head(5).iter_rows(named=True))
        )
    ok = read.filter(pl.col("rejected") == "")
    return dg.MaterializeResult(
        metadata={
            "dagster/column_schema": table_schema(table),
            "images_posted": distinct,
            "images_read": read.height,
            "images_already_read": distinct - read.height,
            "images_rejected": rejected.height,
            "read_on_ray": on_ray,
            "ocr_seconds_per_image": rounded(float(ok["seconds"].mean())) if ok.height else None,
            "mean_confidence": rounded(float(ok["confidence"].mean())) if ok.height else None,
            "with_text": int((ok["text"] != "").sum()),
            "path": dg.MetadataValue.path(str(lake.features / IMAGE_TEXT)),
        }
    )


def images_assets(partitions: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [
        dg.asset(
            name=IMAGE_TEXT,
            group_name="images",
            kinds={"ray", "parquet"},
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=["content"],
        )(image_text)
    ]
