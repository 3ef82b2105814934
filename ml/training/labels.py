"""How labelled rows become a text classifier's training rows: which labels, which weights.

Every label source lands in the training set as its own rows (a reference record, each moderator
decision, each appeal outcome, each QA audit), so one text can carry several labels that
disagree: in the simulator every platform text is also a corpus text, and moderators are wrong
about one time in seven. A `LabelTreatment` says how a recipe reads them:

- `as_given`: one training row per label, as the sources gave it. Texts that were labelled often
  (reposted spam) weigh more, as they do on the platform.
- `consensus`: one training row per distinct text, labelled by the confidence-weighted vote of all
  its labels (QA gold 1.0, a reference record its own agreement, a moderator their measured
  accuracy), weighted by the winning label's share of the vote. A wrong moderator decision on a
  text that a reference set and a QA audit agree on is outvoted instead of learned.

Reference sets also disagree with each other: the smishing set repeats SMS Spam Collection
messages and calls some of them smishing where the SMS set says spam. That is not an error but a
more specific label, so a treatment with `specific_reference_labels` gives every reference copy
of a text the most specific reference label any source gave it (ml.taxonomy.CONFLICT_PRECEDENCE,
the rule the text pool and the held-out labels follow) instead of teaching the model that the
same message is both spam and not spam.

Likely label errors found by confident learning (`ml.training.label_noise`) are down-weighted,
not dropped, and only on platform labels: dropping them removes the hard but correct examples
with them (44% of the flagged platform labels were right, measured against the simulator's
truth), and flagged reference labels are mostly genuine ambiguity (Davidson's hate versus
offensive) that QA should see rather than the model forget.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ml.taxonomy import CONFLICT_PRECEDENCE

PLATFORM_LABEL_PREFIX = "content:"  # label ids of platform labels (moderator decisions, appeals, QA audits)
TRAINING_COLUMNS = ("label_id", "text_hash", "text", "label", "weight")


@dataclass(frozen=True)
class LabelTreatment:
    consensus: bool = False  # one row per text, labelled by the confidence-weighted vote of its labels
    weighted: bool = True  # weight rows by label confidence (False: every label counts the same)
    flagged_weight: float = 1.0  # weight factor of platform labels confident learning flagged (0 drops them)
    specific_reference_labels: bool = False  # reference copies of a text take the most specific reference label


AS_GIVEN = LabelTreatment(weighted=False)  # the baseline's reading: every label as given, unweighted


def flagged_platform_labels(issues: pl.DataFrame) -> pl.DataFrame:
    """label_id of every platform label confident learning flagged as a likely error."""
    return issues.filter(pl.col("is_label_issue") & pl.col("label_id").str.starts_with(PLATFORM_LABEL_PREFIX)).select(
        "label_id"
    )


def training_rows(
    training_set: pl.DataFrame, treatment: LabelTreatment, issues: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The train split's rows as `treatment` reads them: TRAINING_COLUMNS, zero-weight rows left out.

    `issues` (the `label_issues` table) is needed when the treatment down-weights flagged labels.
    """
    rows = training_set.filter(pl.col("split") == "train")
    if treatment.specific_reference_labels:
        rows = most_specific_reference_labels(rows)
    weight = pl.col("confidence").cast(pl.Float64) if treatment.weighted else pl.lit(1.0, dtype=pl.Float64)
    rows = rows.with_columns(weight.alias("weight"))
    if treatment.flagged_weight != 1.0:
        if issues is None:
            raise ValueError("this label treatment down-weights flagged labels: pass the label_issues table")
        flagged = flagged_platform_labels(issues).with_columns(pl.lit(treatment.flagged_weight).alias("_factor"))
        rows = (
            rows.join(flagged, on="label_id", how="left")
            .with_columns(pl.col("weight") * pl.col("_factor").fill_null(1.0))
            .drop("_factor")
        )
    rows = rows.filter(pl.col("weight") > 0)
    if treatment.consensus:
        return consensus(rows)
    return rows.select(TRAINING_COLUMNS)


def most_specific_reference_labels(rows: pl.DataFrame) -> pl.DataFrame:
    """Every reference row relabelled with the most specific reference label of its text; other rows kept."""
    rank = pl.col("label").replace_strict(CONFLICT_PRECEDENCE, return_dtype=pl.Int8)
    reference = pl.col("label_source") == "reference"
    specific = (
        rows.filter(reference)
        .with_columns(_rank=rank)
        .sort("_rank", descending=True)
        .unique("text_hash", keep="first")
        .select("text_hash", pl.col("label").alias("_specific"))
    )
    return (
        rows.join(specific, on="text_hash", how="left")
        .with_columns(pl.when(reference).then(pl.col("_specific")).otherwise(pl.col("label")).alias("label"))
        .drop("_specific")
    )


def consensus(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per text: the label with the largest summed weight (ties: the more specific label,
    ml.taxonomy.CONFLICT_PRECEDENCE), weighted by its share of the text's total weight."""
    votes = rows.group_by("text_hash", "label").agg(
        pl.col("weight").sum().alias("mass"), pl.col("label_id").min(), pl.col("text").first()
    )
    rank = pl.col("label").replace_strict(CONFLICT_PRECEDENCE, return_dtype=pl.Int8)
    winner = (
        votes.with_columns(_rank=rank, _total=pl.col("mass").sum().over("text_hash"))
        .sort("mass", "_rank", descending=True)
        .unique("text_hash", keep="first", maintain_order=True)
    )
    return (
        winner.with_columns((pl.col("mass") / pl.col("_total")).alias("weight"))
        .select(TRAINING_COLUMNS)
        .sort("text_hash")
    )
