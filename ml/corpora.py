"""Read the labelled moderation corpora, map labels to the policy taxonomy, deduplicate.

Each reader parses one file format with a real CSV parser and yields one row per record,
so row counts equal the published counts (see docs/policy_taxonomy.md). The deduplicated
pool is what the simulator posts from: one row per normalised text, with the label chosen
by `ml.taxonomy.CONFLICT_PRECEDENCE` and a stable evaluation bucket.
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.taxonomy import CONFLICT_PRECEDENCE, POLICIES
from ml.text import with_text_identity

log = logging.getLogger(__name__)

# How each corpus is read: (relative glob, reader, surface style).
RAW_SCHEMA = {
    "corpus": pl.String,
    "source": pl.String,
    "record_id": pl.String,
    "source_label": pl.String,
    "policy": pl.String,
    "text": pl.String,
    "confidence": pl.Float64,
}


class CorpusError(ValueError):
    """A corpus file is missing or cannot be parsed; the message names the file and why."""


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Some exports are Windows-1252; decode them rather than dropping rows.
        log.warning("%s is not valid UTF-8; decoding as cp1252", path)
        return data.decode("cp1252", errors="replace")


# A reader yields (record_id, source_label, policy, text, confidence) per record. Confidence is
# the share of annotators who chose the label where the corpus publishes votes (Davidson), else
# the corpus-level default in CorpusSpec (docs/policy_taxonomy.md says why each value).
Record = tuple[str, str, str, str, float | None]


def _davidson(path: Path) -> list[Record]:
    mapping = {"0": "hate_speech", "1": "harassment", "2": "benign"}
    votes = {"0": "hate_speech", "1": "offensive_language", "2": "neither"}
    reader = csv.DictReader(io.StringIO(_decode(path)))
    return [
        (r[""], r["class"], mapping[r["class"]], r["tweet"], int(r[votes[r["class"]]]) / max(int(r["count"]), 1))
        for r in reader
    ]


def _olid(path: Path) -> list[Record]:
    mapping = {"OFF": "harassment", "NOT": "benign"}
    # Tweets contain bare quote characters; the TSV uses no quoting at all.
    reader = csv.DictReader(io.StringIO(_decode(path)), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [(r["id"], r["subtask_a"], mapping[r["subtask_a"]], r["tweet"], None) for r in reader]


def _sms_spam(path: Path) -> list[Record]:
    mapping = {"ham": "benign", "spam": "spam"}
    rows = []
    for n, line in enumerate(_decode(path).splitlines()):
        if not line.strip():
            continue
        label, text = line.split("\t", 1)
        rows.append((str(n + 1), label, mapping[label], text, None))
    return rows


def _smishing(path: Path) -> list[Record]:
    mapping = {"ham": "benign", "spam": "spam", "smishing": "scam"}
    reader = csv.DictReader(io.StringIO(_decode(path)))
    return [
        (str(n + 1), r["label"], mapping[r["label"].strip().lower()], r["TEXT"], None) for n, r in enumerate(reader)
    ]


def _youtube(path: Path) -> list[Record]:
    mapping = {"1": "spam", "0": "benign"}
    reader = csv.DictReader(io.StringIO(_decode(path)))
    return [(r["COMMENT_ID"], r["CLASS"], mapping[r["CLASS"]], r["CONTENT"], None) for r in reader]


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    pattern: str
    reader: Callable[[Path], list[Record]]
    style: str  # which surfaces its texts look like they came from
    confidence: float  # label confidence when the corpus publishes no per-record agreement
    per_file_source: bool = False  # each file is its own source (each YouTube video)

    def source_of(self, path: Path) -> str:
        if not self.per_file_source:
            return self.name
        # Youtube01-Psy.csv -> youtube_psy: a video is a platform the model may never have seen.
        return f"youtube_{path.stem.split('-', 1)[-1].lower()}"


CORPORA: tuple[CorpusSpec, ...] = (
    CorpusSpec("davidson_hate_offensive", "davidson_hate_offensive/labeled_data.csv", _davidson, "tweet", 0.8),
    # OLID's level-A labels were adjudicated by a third annotator where two disagreed.
    CorpusSpec("olid_offenseval2019", "olid_offenseval2019/olid-training-v1.0.tsv", _olid, "tweet", 0.9),
    CorpusSpec("sms_spam_collection", "sms_spam_collection/SMSSpamCollection", _sms_spam, "sms", 0.95),
    CorpusSpec("sms_smishing", "sms_smishing/Dataset_5971.csv", _smishing, "sms", 0.9),
    CorpusSpec("youtube_spam", "youtube_spam/Youtube*.csv", _youtube, "youtube", 0.95, per_file_source=True),
)
STYLE_OF = {c.name: c.style for c in CORPORA}


def read_corpora(directory: Path) -> pl.DataFrame:
    """Every record of every corpus, one row each (RAW_SCHEMA): corpus, source (the corpus, or the
    video for YouTube), record_id, source_label, policy, text and label confidence."""
    frames = []
    for spec in CORPORA:
        paths = sorted(Path(directory).glob(spec.pattern))
        if not paths:
            raise CorpusError(f"corpus {spec.name}: no file matches {directory}/{spec.pattern}")
        for path in paths:
            try:
                rows = spec.reader(path)
            except (KeyError, ValueError, csv.Error) as exc:
                raise CorpusError(f"corpus {spec.name}: cannot parse {path}: {exc!r}") from exc
            frames.append(
                pl.DataFrame(
                    {
                        "corpus": [spec.name] * len(rows),
                        "source": [spec.source_of(path)] * len(rows),
                        "record_id": [r[0] for r in rows],
                        "source_label": [r[1] for r in rows],
                        "policy": [r[2] for r in rows],
                        "text": [r[3] for r in rows],
                        "confidence": [spec.confidence if r[4] is None else r[4] for r in rows],
                    },
                    schema=RAW_SCHEMA,
                )
            )
    return pl.concat(frames)


def deduplicate(records: pl.DataFrame) -> pl.DataFrame:
    """One row per normalised text.

    The kept text is the first copy seen (corpus order, then file order); the policy is the
    highest-precedence label among all copies (`CONFLICT_PRECEDENCE`); `label_conflict` marks
    texts whose copies disagreed and `sources` lists the corpora they came from.
    """
    rank = pl.col("policy").replace_strict(CONFLICT_PRECEDENCE, return_dtype=pl.Int8)
    ident = with_text_identity(records.with_row_index("_order"))
    pool = (
        ident.with_columns(_rank=rank)
        .group_by("text_hash", maintain_order=True)
        .agg(
            pl.col("text").first(),
            pl.col("text_norm").first(),
            pl.col("eval_bucket").first(),
            pl.col("corpus").first(),
            pl.col("policy").sort_by("_rank", descending=True).first(),
            pl.col("policy").n_unique().gt(1).alias("label_conflict"),
            pl.col("corpus").unique(maintain_order=True).alias("sources"),
            pl.len().alias("n_copies"),
        )
        .filter(pl.col("text_norm") != "")
    )
    return pool.with_columns(style=pl.col("corpus").replace_strict(STYLE_OF, default="tweet"))


# ---------------------------------------------------------------------------------------
# Built-in fallback: a small template generator so the pipeline runs with no corpora.
# ---------------------------------------------------------------------------------------
_TEMPLATES: dict[str, tuple[str, list[str], list[str]]] = {
    "benign": (
        "tweet",
        [
            "had a great {x} with my {y} today",
            "does anyone know a good {x} near the {y}",
            "loving this {x}, thanks for sharing",
            "can't wait for the {x} this weekend with {y}",
            "what a {x} game last night",
            "happy birthday to my favourite {y}",
        ],
        ["lunch", "walk", "movie", "coffee", "concert", "family", "friends", "team", "park", "sister"],
    ),
    "harassment": (
        "tweet",
        [
            "you are such a pathetic {x}, nobody likes you",
            "shut up you stupid {x}",
            "go away {x}, you are worthless",
            "everyone knows you are a lying {x}",
            "lol look at this ugly {x}",
            "you {x}, delete your account",
        ],
        ["loser", "clown", "idiot", "moron", "fool", "joke", "creep", "coward", "freak", "liar"],
    ),
    "hate_speech": (
        "tweet",
        [
            "all {x} should be banned from this country",
            "{x} are vermin and do not belong here",
            "I hate every one of those {x}",
            "get the {x} out of our {y}",
            "{x} are subhuman",
            "we need to get rid of {x} for good",
        ],
        ["immigrants", "foreigners", "those people", "outsiders", "neighbourhood", "city", "schools"],
    ),
    "spam": (
        "youtube",
        [
            "check out my channel for free {x}!!!",
            "subscribe to me and win {x}",
            "FREE {x} click here now www.{y}.com",
            "follow my page for daily {x}",
            "earn {x} from home, visit {y}.net",
            "like and share for a chance to get {x}",
        ],
        ["giftcards", "followers", "iphones", "crypto", "cash", "promo", "deals", "prizes"],
    ),
    "scam": (
        "sms",
        [
            "URGENT your {x} account is locked, verify at http://{y}.co now",
            "you have won a {x}! call 0800 {n} to claim",
            "your {x} parcel is held, pay fee at {y}.info",
            "final notice: {x} refund pending, send your card details to {y}",
            "bank alert: unusual {x} login, confirm pin at http://{y}-secure.com",
        ],
        ["bank", "paypal", "lottery", "tax", "delivery", "netflix", "prize", "wallet"],
    ),
}


def builtin_records(seed: int = 7, per_policy: int = 600) -> pl.DataFrame:
    """Deterministic synthetic records (RAW_SCHEMA), used only when no corpora directory is available."""
    rng = np.random.default_rng(seed)
    rows = []
    for policy, (_style, templates, words) in _TEMPLATES.items():
        for _ in range(per_policy):
            t = templates[rng.integers(len(templates))]
            text = t.format(
                x=words[rng.integers(len(words))],
                y=words[rng.integers(len(words))],
                n=int(rng.integers(100000, 999999)),
            )
            rows.append(("builtin", policy, text + " " + "".join(rng.choice(list("!?. "), 2))))
    records = pl.DataFrame(
        {
            "corpus": [f"builtin_{_TEMPLATES[r[1]][0]}" for r in rows],
            "source": [f"builtin_{_TEMPLATES[r[1]][0]}" for r in rows],
            "record_id": [str(i) for i in range(len(rows))],
            "source_label": [r[1] for r in rows],
            "policy": [r[1] for r in rows],
            "text": [r[2] for r in rows],
            "confidence": [1.0] * len(rows),
        },
        schema=RAW_SCHEMA,
    )
    return records


def builtin_pool(seed: int = 7, per_policy: int = 600) -> pl.DataFrame:
    """The built-in records deduplicated into a text pool."""
    pool = deduplicate(builtin_records(seed, per_policy))
    return pool.with_columns(style=pl.col("corpus").str.strip_prefix("builtin_"))


def load_records(directory: Path | None, seed: int = 7) -> tuple[pl.DataFrame, str]:
    """Every labelled record and where it came from ('corpora:<dir>' or 'builtin', with the same warning)."""
    if directory is not None and Path(directory).is_dir():
        return read_corpora(Path(directory)), f"corpora:{directory}"
    _warn_builtin(directory)
    return builtin_records(seed), "builtin"


def _warn_builtin(directory: Path | None) -> None:
    msg = (
        f"NO CORPORA DIRECTORY ({directory!s}): falling back to trustlake's small built-in "
        "template texts. Models trained on them mean nothing; set TRUSTLAKE_CORPORA to the "
        "labelled corpora folder for real data."
    )
    warnings.warn(msg, stacklevel=3)
    log.warning(msg)


def load_text_pool(directory: Path | None, seed: int = 7) -> tuple[pl.DataFrame, str]:
    """The deduplicated text pool and where it came from ('corpora:<dir>' or 'builtin')."""
    if directory is not None and Path(directory).is_dir():
        return deduplicate(read_corpora(Path(directory))), f"corpora:{directory}"
    _warn_builtin(directory)
    return builtin_pool(seed), "builtin"


__all__ = [
    "CORPORA",
    "CorpusError",
    "POLICIES",
    "builtin_pool",
    "builtin_records",
    "deduplicate",
    "load_records",
    "load_text_pool",
    "read_corpora",
]
