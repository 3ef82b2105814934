"""`trustlake score` on files: streamed in bounded memory, nothing lost, nothing half-written, no tracebacks.

The champion is a small TF-IDF baseline fitted here (no Ray), registered and promoted in a
module-scoped home; its operating points are fixed numbers, since these tests are about the
scoring path, not about choosing thresholds. Batch sizes are shrunk so a few hundred rows cross
many batch boundaries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml import scoring
from ml.features.text import hashed_ngrams
from ml.registry import Registry
from ml.scoring import OUTPUT_COLUMNS, load_champion, score_frame
from ml.scoring import io as scoring_io
from ml.taxonomy import VIOLATING
from ml.training.artifacts import PROBA_COLUMNS
from orchestration.cli import main
from orchestration.settings import PROJECT_ROOT
from tests.helpers import labelled_training_frame, registry_entry, text_classifier_candidate

ROWS = 300


@pytest.fixture(scope="module")
def home(pool, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("scoring-home")
    frame, _ = labelled_training_frame(pool, seed=11, days=6, rows=2500)
    artifact, _ = text_classifier_candidate(frame, home / "models")
    points = {
        p: {
            "policy": p,
            "auto_action_threshold": 0.9,
            "review_threshold": 0.5,
            "auto_action_precision": 0.9,
            "review_recall": 0.8,
            "reachable": True,
        }
        for p in VIOLATING
    }
    (Path(artifact.path) / "operating_points.json").write_text(json.dumps(points))
    registry = Registry(home / "models")
    registry.register(
        registry_entry(
            artifact.version,
            artifact.path,
            artifact.kind,
            artifact.dataset_version,
            metrics={"test_macro_pr_auc": 0.5, "gates_passed": True},
            operating_points=points,
        )
    )
    registry.promote(artifact.version, reason="test champion", actor="test")
    return home


@pytest.fixture(scope="module")
def texts(pool) -> list[str]:
    """Real texts with commas, quotes and line breaks mixed in, and one empty text."""
    sample = pool["text"].sample(n=ROWS, seed=3, with_replacement=True).to_list()
    sample[10] = 'she said "stop", then left,\nfor good'
    sample[11] = ""
    return [f"{t} #{i}" if i != 11 else t for i, t in enumerate(sample)]


@pytest.fixture
def small_batches(monkeypatch):
    """Many batches from a few hundred rows: 7 rows per Parquet batch, 1 KB CSV blocks."""
    monkeypatch.setattr(scoring_io, "BATCH_ROWS", 7)
    monkeypatch.setattr(scoring_io, "CSV_BLOCK_BYTES", 1024)


def score_cli(capsys, home: Path, monkeypatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("TRUSTLAKE_HOME", str(home))
    code = main(["score", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_output_equal_to_input_is_refused_and_the_input_is_unchanged(home, texts, tmp_path, capsys, monkeypatch):
    for suffix in (".csv", ".parquet"):
        src = tmp_path / f"posts{suffix}"
        frame = pl.DataFrame({"id": range(ROWS), "body": texts})
        frame.write_csv(src) if suffix == ".csv" else frame.write_parquet(src)
        before = digest(src)
        (tmp_path / "sub").mkdir(exist_ok=True)
        for same in (str(src), str(tmp_path / "sub" / ".." / src.name)):
            code, out, err = score_cli(
                capsys, home, monkeypatch, "--input", str(src), "--text-column", "body", "--output", same
            )
            assert code == 2 and out == ""
            assert err.count("\n") == 1 and "is the input file" in err, err
            assert digest(src) == before
        assert leftovers(tmp_path) == []


def test_score_cli_errors_are_one_line_with_exit_code_2_from_the_real_command(home, texts, tmp_path):
    src = tmp_path / "posts.csv"
    pl.DataFrame({"body": texts[:5]}).write_csv(src)
    exe = Path(sys.executable).with_name("trustlake")
    env = {**os.environ, "TRUSTLAKE_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    for args, message in (
        [["--output", str(src)], "is the input file"],
        [["--output", str(tmp_path / "missing" / "out.csv")], "no such folder"],
    ):
        result = subprocess.run(
            [str(exe), "score", "--input", str(src), "--text-column", "body", *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1 and message in result.stderr


def test_a_missing_output_folder_is_a_one_line_error_before_any_work(home, texts, tmp_path, capsys, monkeypatch):
    src = tmp_path / "posts.parquet"
    pl.DataFrame({"body": texts}).write_parquet(src)
    code, out, err = score_cli(
        capsys,
        home,
        monkeypatch,
        "--input",
        str(src),
        "--text-column",
        "body",
        "--output",
        str(tmp_path / "no" / "such" / "out.parquet"),
    )
    assert code == 2 and out == ""
    assert err == f"trustlake score: {tmp_path / 'no' / 'such'}: no such folder for the output; create it first\n"
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "column, kind",
    [
        (pa.array([["a", "b"], ["c"]], type=pa.list_(pa.string())), "list<"),
        (pa.array([{"t": "a"}, {"t": "b"}], type=pa.struct([("t", pa.string())])), "struct<"),
    ],
)
def test_a_list_or_struct_text_column_is_a_clear_error(home, tmp_path, capsys, monkeypatch, column, kind):
    src = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"id": [1, 2], "body": column}), src)
    code, _, err = score_cli(
        capsys,
        home,
        monkeypatch,
        "--input",
        str(src),
        "--text-column",
        "body",
        "--output",
        str(tmp_path / "out.parquet"),
    )
    assert code == 2 and err.count("\n") == 1
    assert f"column 'body' holds {kind}" in err and "values, not text" in err, err
    assert not (tmp_path / "out.parquet").exists() and leftovers(tmp_path) == []


def test_non_utf8_csv_rows_are_kept_flagged_and_named_on_stderr(home, tmp_path, capsys, monkeypatch, small_batches):
    lines = [b"id,body,author"]
    for i in range(1, 41):
        body = b"caf\xe9 au lait, cheap" if i in (3, 9, 17, 23, 31, 38) else f"plain text {i}".encode()
        author = b"ren\xe9e" if i == 12 else b"bob"
        lines.append(b'%d,"%s",%s' % (i, body, author))
    src = tmp_path / "latin1.csv"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out_path = tmp_path / "scored.csv"
    code, out, err = score_cli(
        capsys, home, monkeypatch, "--input", str(src), "--text-column", "body", "--output", str(out_path)
    )
    assert code == 0 and out == f"trustlake score: wrote {out_path}\n", err
    notes = err.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith(
        f"trustlake score: {src}: 7 row(s) hold bytes that are not UTF-8 "
        "(rows 3, 9, 12, 17, 23, ...; row 1 is the first row of data) "
        "in column(s) author, body"
    )
    scored = pl.read_csv(out_path, infer_schema=False)
    assert scored["id"].to_list() == [str(i) for i in range(1, 41)]
    flagged = scored.filter(pl.col("text_flag") == "invalid_utf8")["id"].to_list()
    assert flagged == ["3", "9", "17", "23", "31", "38"]  # row 12's text is fine; its author is not
    assert scored["body"][2] == "caf\ufffd au lait, cheap" and scored["author"][11] == "ren\ufffde"
    assert scored["action"].null_count() == 0


def test_binary_parquet_text_is_decoded_and_its_bad_bytes_flagged(home, tmp_path, capsys, monkeypatch):
    src = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"body": pa.array([b"fine text", b"caf\xe9", None], type=pa.binary())}), src)
    code, _, err = score_cli(
        capsys,
        home,
        monkeypatch,
        "--input",
        str(src),
        "--text-column",
        "body",
        "--output",
        str(tmp_path / "out.parquet"),
    )
    assert code == 0 and "1 row(s) hold bytes that are not UTF-8 (row 2;" in err, err
    scored = pl.read_parquet(tmp_path / "out.parquet")
    assert scored["body"].to_list() == ["fine text", "caf\ufffd", None]
    assert scored["text_flag"].to_list() == [None, "invalid_utf8", "empty_text"]


def test_empty_text_is_scored_and_flagged(home, tmp_path, capsys, monkeypatch):
    champion = load_champion(home / "models")
    frame = pl.DataFrame({"text": ["", "   \n", None, "claim your free prize now"]})
    scores = score_frame(champion, frame)
    assert scores.columns == list(OUTPUT_COLUMNS)
    assert scores["text_flag"].to_list() == ["empty_text", "empty_text", "empty_text", None]
    assert np.allclose(scores.select(PROBA_COLUMNS).to_numpy().sum(axis=1), 1.0)
    assert scores["action"].null_count() == 0

    src = tmp_path / "posts.parquet"
    frame.rename({"text": "body"}).write_parquet(src)
    code, _, err = score_cli(
        capsys,
        home,
        monkeypatch,
        "--input",
        str(src),
        "--text-column",
        "body",
        "--output",
        str(tmp_path / "out.parquet"),
    )
    assert code == 0
    assert "3 row(s) have empty text: scored, and flagged text_flag=empty_text" in err
    assert pl.read_parquet(tmp_path / "out.parquet")["text_flag"].to_list() == ["empty_text"] * 3 + [None]


@pytest.mark.parametrize(
    "in_suffix, out_suffix", [(".csv", ".csv"), (".csv", ".parquet"), (".parquet", ".parquet"), (".parquet", ".csv")]
)
def test_streamed_scores_equal_whole_frame_scores_for_every_row_in_order(
    home, texts, tmp_path, capsys, monkeypatch, small_batches, in_suffix, out_suffix
):
    frame = pl.DataFrame({"id": [f"{i:05d}" for i in range(ROWS)], "body": texts, "lang": ["en"] * ROWS})
    src = tmp_path / f"posts{in_suffix}"
    if in_suffix == ".csv":
        frame.write_csv(src)
    else:
        pq.write_table(frame.to_arrow(), src, row_group_size=50)  # row groups cut across batches too
    out_path = tmp_path / f"scored{out_suffix}"
    code, _, err = score_cli(
        capsys, home, monkeypatch, "--input", str(src), "--text-column", "body", "--output", str(out_path)
    )
    assert code == 0, err
    scored = pl.read_csv(out_path, infer_schema=False) if out_suffix == ".csv" else pl.read_parquet(out_path)
    assert scored.columns == ["id", "body", "lang", *OUTPUT_COLUMNS]
    assert scored["id"].to_list() == frame["id"].to_list()  # leading zeros kept: CSV values pass through as text
    assert scored["body"].to_list() == texts
    whole = score_frame(load_champion(home / "models"), frame.select(pl.col("body").alias("text")))
    got = scored.select(pl.col(c).cast(pl.Float64) for c in PROBA_COLUMNS).to_numpy()
    assert np.array_equal(got, whole.select(PROBA_COLUMNS).to_numpy())  # CSV floats round-trip exactly
    assert scored["action"].to_list() == whole["action"].to_list()
    assert scored["text_flag"].to_list() == whole["text_flag"].to_list()
    assert leftovers(tmp_path) == []


def test_a_read_error_mid_file_leaves_the_previous_output_and_no_temp_file(
    home, texts, tmp_path, capsys, monkeypatch, small_batches
):
    src = tmp_path / "posts.csv"
    pl.DataFrame({"id": range(ROWS), "body": texts}).write_csv(src)
    out_path = tmp_path / "scored.parquet"
    assert (
        score_cli(capsys, home, monkeypatch, "--input", str(src), "--text-column", "body", "--output", str(out_path))[0]
        == 0
    )
    before = digest(out_path)
    with src.open("a") as fh:
        fh.write("999,one field too many,surprise\n")  # far past the first 1 KB block
    code, _, err = score_cli(
        capsys, home, monkeypatch, "--input", str(src), "--text-column", "body", "--output", str(out_path)
    )
    assert code == 2 and err.count("\n") == 1
    assert "cannot read it as csv after row" in err and "Expected 2 columns, got 3" in err, err
    assert digest(out_path) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("budget", [None, 20_000])
def test_featurisation_is_per_batch_and_the_repost_cache_stays_within_its_budget(home, texts, monkeypatch, budget):
    """Bounded memory, structurally: hashed n-grams (KBs per text) are built per batch, never for
    the whole call; reposts from earlier batches come from a cache that never outgrows its
    budget; and the scorer always gets exactly `hashed_ngrams` of its chunk."""
    champion = load_champion(home / "models")
    calls: list[int] = []

    def recording(batch_texts):
        calls.append(len(batch_texts))
        return hashed_ngrams(batch_texts)

    cache = scoring.NgramCache() if budget is None else scoring.NgramCache(max_values=budget)
    sizes: list[int] = []

    class NgramScorer:  # the real baseline, asked to take the hashed n-gram path of the other kinds
        uses_hashed_ngrams = True

        def predict_proba(self, chunk, ngrams):
            assert ngrams.shape[0] == chunk.height
            assert (ngrams != hashed_ngrams(chunk["text"].to_list())).nnz == 0
            sizes.append(cache.values)
            return champion.scorer.predict_proba(chunk)

    monkeypatch.setattr(scoring, "hashed_ngrams", recording)
    ngram_champion = scoring.Champion(champion.version, NgramScorer(), champion.thresholds, champion.policy)
    frame = pl.DataFrame({"text": texts * 3})  # every text reposted in later batches
    scores = score_frame(ngram_champion, frame, batch_size=64, cache=cache)
    assert scores.height == frame.height and len(sizes) == -(-frame.height // 64)
    assert calls and max(calls) <= 64
    if budget is None:  # all fit: each distinct text featurised once for the whole call
        assert sum(calls) == len(set(texts))
    else:  # a small cache forgets, so reposts are featurised again, but it never grows past its budget
        assert sum(calls) > len(set(texts)) and max(sizes) <= budget
    assert np.array_equal(
        scores.select(PROBA_COLUMNS).to_numpy(), score_frame(champion, frame).select(PROBA_COLUMNS).to_numpy()
    )


def test_an_image_column_scores_each_row_on_its_caption_and_image_text_and_flags_every_bad_image_kind(
    home, tmp_path, capsys, monkeypatch
):
    from PIL import Image

    from ml.images.render import render_text_image
    from ml.images.transforms import encode_image
    from tests.test_images import _encoded, _png_header_only

    folder = tmp_path / "uploads"
    folder.mkdir()
    spam = render_text_image("Win a free phone now, text WIN to 80800 today", np.random.default_rng(3), "flyer")
    gif = io.BytesIO()
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    good = encode_image(spam.image, "PNG")
    files = {
        "good.png": good,
        "empty.jpg": b"",
        "notes.jpg": b"these are not image bytes at all",
        "cut.png": good[: len(good) // 2],
        "scan.tiff": _encoded("TIFF"),
        "bomb.png": _png_header_only(7000, 7000),
        "huge.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * (20 * 1024 * 1024),
        "moving.gif": gif.getvalue(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    names = [*(f"uploads/{n}" for n in files), "uploads/gone.png", None]
    src = tmp_path / "posts.csv"
    pl.DataFrame({"caption": ["look"] * len(names), "image": names}).write_csv(src)
    out = tmp_path / "posts.scored.csv"

    code, _, err = score_cli(
        capsys, home, monkeypatch, "--input", str(src), "--text-column", "caption", "--image-column", "image"
    )

    assert code == 0, err
    scored = pl.read_csv(out, infer_schema=False)
    assert scored.height == len(names) and scored["action"].null_count() == 0
    assert scored["image_flag"].to_list() == [
        None,
        "empty",
        "not_an_image",
        "truncated",
        "unsupported_format",
        "too_many_pixels",
        "too_large",
        "animated_first_frame",
        "unreadable",
        None,
    ]
    assert "80800" in scored["image_text"][0] and scored["image_text"][1:7].null_count() == 6
    assert "8 image(s) could not be read" not in err and "7 image(s) could not be read" in err
    assert "1 animated image(s): only the first frame was read" in err
    # The row is scored on its caption and the image's text: the same scores as that text scored directly.
    direct = score_frame(load_champion(home / "models"), pl.DataFrame({"text": [f"look {scored['image_text'][0]}"]}))
    assert float(scored["p_spam"][0]) == pytest.approx(direct["p_spam"][0])
