"""What an author's history and near-duplicate copies add to text for spam, on real comments.

    .venv/bin/python bench/real_comments.py [--corpora DIR] [--resamples 1000]

The YouTube Spam Collection (<corpora>/youtube_spam, see SOURCES.md) carries each comment's author and
time: the one real corpus here with behaviour in it. Leave one video out: a model trained on the other
three videos' comments scores the held-out video's, once on text alone and once on text plus what was
known of the comment's behaviour when it was posted (the signals the campaign work builds on):

- author_prior_comments: the author's comments before it (any video);
- copies_before / copy_accounts_before: earlier comments whose text is a near-duplicate of it (MinHash
  at the pipeline's Jaccard threshold, ml/matching/text.py) and the other accounts that posted them;
- artifact_posts_before / artifact_accounts_before: earlier comments sharing one of its links, numbers
  or addresses (ml/campaigns/links.py).

In the first two arms no label enters a feature, so the held-out video's labels stay unseen (the third,
below, reads the labels of earlier comments, as a platform's removals). Time order comes from DATE;
comments without one (in this collection only spam rows lack it) are left out of the evaluation and of
the history, because a missing date alone would give the label away; a video left with one class (Eminem:
every spam comment is undated) is left out altogether. Both models are the same
logistic regression over word 1-2-gram and char_wb 2-5-gram TF-IDF (C=1), the behavioural one with the
five counts (log1p) beside the text. A third arm adds one hop of label propagation as the pipeline's
campaign features do (ml/campaigns/features.py): earlier copies and artifact-sharing comments that had
been removed, taking every spam comment as removed an hour after it was posted (a platform's moderators
acting on earlier comments of the same video is what such features assume): every spam comment caught
and none wrongly, so this arm is an upper bound on what propagation could add. Reported per held-out video:
spam average precision of each arm and the paired bootstrap interval of its difference from text alone. Writes bench/results/real_comments.json.
"""

from __future__ import annotations

import argparse
import csv
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from report import write_report  # bench/report.py, beside this script
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from ml.campaigns.features import campaign_features
from ml.campaigns.links import post_artifacts, text_neighbours, text_signatures
from ml.matching.text import TextMatchParams
from ml.text import normalise, text_hash
from orchestration.settings import Settings

BEHAVIOUR = (
    "author_prior_comments",
    "copies_before",
    "copy_accounts_before",
    "artifact_posts_before",
    "artifact_accounts_before",
)


def comments(corpora: Path) -> tuple[pl.DataFrame, dict[str, int]]:
    """Every dated comment of the four videos (content_id, video, author_id, created_at, text, text_hash,
    spam), and how many undated ones each video had."""
    rows, undated = [], {}
    for path in sorted((corpora / "youtube_spam").glob("Youtube*.csv")):
        video = path.stem.split("-", 1)[-1].lower()
        for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"))):
            if not r["DATE"].strip():
                undated[video] = undated.get(video, 0) + 1
                continue
            rows.append((video, r["AUTHOR"], r["DATE"][:19], r["CONTENT"], int(r["CLASS"])))
    frame = pl.DataFrame(rows, schema=["video", "author", "date", "text", "spam"], orient="row")
    authors = {a: i for i, a in enumerate(sorted(set(frame["author"])))}
    return (
        frame.with_row_index("content_id")
        .with_columns(
            pl.col("content_id").cast(pl.Int64),
            pl.col("author").replace_strict(authors, return_dtype=pl.Int64).alias("author_id"),
            pl.col("date").str.to_datetime("%Y-%m-%dT%H:%M:%S").alias("created_at"),
            pl.Series("text_hash", [text_hash(normalise(t)) for t in frame["text"]]),
        )
        .drop("author", "date"),
        undated,
    )


REMOVAL_DELAY = timedelta(hours=1)  # when the propagation arm takes a spam comment to have been removed
PROPAGATED = ("copies_removed_before", "artifact_removed_before", "linked_removal_rate")


def behaviour(posts: pl.DataFrame) -> pl.DataFrame:
    """BEHAVIOUR and PROPAGATED of every comment, counting only comments posted (or removed) strictly before
    it; for PROPAGATED, every spam comment counts as removed REMOVAL_DELAY after it was posted."""
    params = TextMatchParams()
    neighbours = text_neighbours(text_signatures(posts.select("text_hash", "text"), None, params), params)
    removals = posts.filter(pl.col("spam") == 1).select(
        "content_id",
        (pl.col("created_at") + REMOVAL_DELAY).alias("removed_at"),
        pl.lit(None, pl.Datetime("us")).alias("overturned_at"),
    )
    linked = campaign_features(posts, posts, neighbours, post_artifacts(posts), removals)
    prior = posts.sort("created_at", "content_id").select(
        "content_id", (pl.col("created_at").rank("min").over("author_id") - 1).alias("author_prior_comments")
    )
    return prior.join(linked, on="content_id").select("content_id", *BEHAVIOUR, *PROPAGATED)


def paired(y: np.ndarray, base: np.ndarray, other: np.ndarray, resamples: int, seed: int) -> dict:
    """`other`'s spam average precision, its difference from `base`'s, and the paired bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if y[i].any() and not y[i].all():
            diffs.append(average_precision_score(y[i], other[i]) - average_precision_score(y[i], base[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    ap = average_precision_score(y, other)
    delta = ap - average_precision_score(y, base)
    return {
        "ap": round(float(ap), 4),
        "delta_vs_text": round(float(delta), 4),
        "delta_95": [round(lo, 4), round(hi, 4)],
    }


def fitted(x: sp.csr_matrix, y: np.ndarray, x_test: sp.csr_matrix) -> np.ndarray:
    return LogisticRegression(C=1.0, solver="liblinear").fit(x, y).predict_proba(x_test)[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", type=Path, default=None, help="default: TRUSTLAKE_CORPORA / ../shared")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    corpora = args.corpora or Settings.from_env().corpora
    if corpora is None or not (Path(corpora) / "youtube_spam").is_dir():
        raise SystemExit(f"no youtube_spam corpus under {corpora}: pass --corpora DIR")
    posts, undated = comments(Path(corpora))
    # A video whose dated comments are all one class (Eminem: every spam comment is undated) has no honest
    # time order for spam: it is left out, as training data too, so it cannot bias either model.
    classes = posts.group_by("video").agg(pl.col("spam").n_unique().alias("n"))
    left_out = sorted(classes.filter(pl.col("n") < 2)["video"])
    posts = posts.filter(~pl.col("video").is_in(left_out))
    feats = behaviour(posts)
    frame = posts.join(feats, on="content_id").sort("content_id")
    arms = {
        "text_and_behaviour": np.log1p(frame.select(BEHAVIOUR).to_numpy().astype(float)),
        "text_behaviour_and_propagation": np.log1p(frame.select(*BEHAVIOUR, *PROPAGATED).to_numpy().astype(float)),
    }
    texts, spam = frame["text"].to_list(), frame["spam"].to_numpy()
    results = {}
    for k, video in enumerate(sorted(frame["video"].unique())):
        train, test = (frame["video"] != video).to_numpy(), (frame["video"] == video).to_numpy()
        word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
        fit_texts = [t for t, keep in zip(texts, train) if keep]
        held = [t for t, keep in zip(texts, test) if keep]
        x_text = sp.hstack([word.fit_transform(fit_texts), char.fit_transform(fit_texts)]).tocsr()
        t_text = sp.hstack([word.transform(held), char.transform(held)]).tocsr()
        y, y_test = spam[train], spam[test]
        text_only = fitted(x_text, y, t_text)
        held_rows = frame.filter(pl.Series(test))
        results[video] = {
            "comments": int(test.sum()),
            "spam": int(y_test.sum()),
            "undated_left_out": undated.get(video, 0),
            "with_earlier_copies": int((held_rows["copies_before"] > 0).sum()),
            "with_author_history": int((held_rows["author_prior_comments"] > 0).sum()),
            "text_ap": round(float(average_precision_score(y_test, text_only)), 4),
            **{
                arm: paired(
                    y_test,
                    text_only,
                    fitted(sp.hstack([x_text, dense[train]]).tocsr(), y, sp.hstack([t_text, dense[test]]).tocsr()),
                    args.resamples,
                    seed=k,
                )
                for arm, dense in arms.items()
            },
        }
    left = {v: f"all {undated.get(v, 0)} undated comments are spam: no dated spam to evaluate" for v in left_out}
    write_report(
        "real_comments",
        {
            "held_out_video": results,
            "left_out": left,
            "behaviour": list(BEHAVIOUR),
            "propagation": list(PROPAGATED),
            "removal_delay_hours": REMOVAL_DELAY.total_seconds() / 3600,
        },
    )


if __name__ == "__main__":
    main()
