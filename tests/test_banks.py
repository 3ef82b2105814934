"""Hash banks: importing a CSV keeps good rows and quarantines the rest with reasons; banked images
are found again after every evasion; matches carry their provenance."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from ml.images.ocr import read_images
from ml.images.render import render_benign_image, render_text_image
from ml.images.transforms import EVASIONS, TRANSFORMS
from ml.matching.bank_import import BankImportError, import_bank_csv
from ml.matching.banks import (
    BankEntry,
    BankIndex,
    BankKind,
    ConfirmedRemoval,
    Imported,
    bank_removed_image,
    entries_frame,
    entries_from_frame,
)
from ml.matching.pdq import ORIGINAL_AND_MIRROR, image_codes
from ml.matching.threshold import DEFAULT_RADIUS

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
GOOD_HASH = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
OTHER_HASH = "d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22"
SCAM = "URGENT your account is locked, verify your bank details at secure-verify-login.com within 24 hours"


def _import(tmp_path, content: str, kind="pdq", name="bank.csv", **kwargs):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return import_bank_csv(path, "te-spam", "spam", kind, "analyst@example.org", NOW, **kwargs)


def test_a_pdq_bank_with_bad_rows_keeps_the_good_ones_and_quarantines_each_bad_one_with_its_reason(tmp_path):
    rows = [
        "hash,quality,note",
        f"{GOOD_HASH},100,from threatexchange",
        f"{OTHER_HASH.upper()},90,upper case is fine",
        "abc123,100,too short",
        f"{GOOD_HASH[:-1]}z,100,not hex",
        f"{'0' * 64},100,degenerate",
        f"{GOOD_HASH},100,same as line 2",
        f"{'1' * 64},20,featureless",
        f"{'2' * 64},high,quality not a number",
        ",100,empty value",
        f"{'3' * 64},100",
        "",
        f"{'4' * 64},,no quality given",
    ]
    result = _import(tmp_path, "\n".join(rows) + "\n")
    assert [e.value for e in result.entries] == [GOOD_HASH, OTHER_HASH, "4" * 64]
    assert all(e.kind == BankKind.PDQ and e.bank == "te-spam" and e.policy == "spam" for e in result.entries)
    assert result.entries[0].provenance == Imported("bank.csv", 2, "analyst@example.org", NOW)
    reasons = {q.line: q.reason for q in result.quarantined}
    assert "has 6 characters" in reasons[4]
    assert "non-hex" in reasons[5]
    assert "degenerate" in reasons[6]
    assert reasons[7] == "duplicate of line 2"
    assert "quality 20 is below 50" in reasons[8]
    assert "not a number" in reasons[9]
    assert "empty pdq value" in reasons[10]
    assert "has 2 fields; the header has 3" in reasons[11]
    assert reasons[12] == "empty line"
    assert result.rows == len(rows) - 1 == len(result.entries) + len(result.quarantined)
    frame = result.quarantine_frame()
    assert frame.columns == ["line", "row", "reason"] and frame.height == 9
    assert frame.filter(pl.col("line") == 4)["row"].item() == "abc123,100,too short"
    assert "3 imported, 9 quarantined" in result.summary()


def test_reimporting_a_file_adds_nothing_the_bank_already_has(tmp_path):
    first = _import(tmp_path, f"pdq\n{GOOD_HASH}\n")
    again = _import(tmp_path, f"pdq\n{GOOD_HASH}\n{OTHER_HASH}\n", existing=[e.value for e in first.entries])
    assert [e.value for e in again.entries] == [OTHER_HASH]
    assert [q.reason for q in again.quarantined] == ["already in the bank"]


def test_a_text_bank_checks_length_and_near_identical_duplicates(tmp_path):
    long_text = "spam " * 1200
    content = (
        "text,source\n"
        f'"{SCAM}",report 1\n'
        f'"{SCAM.upper()}!!!",same text shouting\n'
        "hi there,too short\n"
        f"{long_text},too long\n"
        '"Win a car, call now, multiple, commas inside quotes",quoted\n'
    )
    result = _import(tmp_path, content, kind="text")
    assert [e.value for e in result.entries] == [SCAM, "Win a car, call now, multiple, commas inside quotes"]
    reasons = [q.reason for q in result.quarantined]
    assert reasons[0] == "duplicate of line 2"
    assert "too short to match" in reasons[1]
    assert "more than 5000" in reasons[2]


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "is empty"),
        ("signal_type,indicator\npdq,abc\n", "no column for pdq values"),
    ],
)
def test_a_file_that_cannot_be_imported_at_all_says_why(tmp_path, content, message):
    with pytest.raises(BankImportError, match=message):
        _import(tmp_path, content)


def test_a_file_that_is_not_utf8_or_not_there_or_a_bad_policy_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text\ncaf\xe9 au lait and more words\n".encode("latin-1"))
    with pytest.raises(BankImportError, match="not UTF-8 text \\(line 2"):
        import_bank_csv(path, "b", "spam", "text", "me", NOW)
    with pytest.raises(BankImportError, match="cannot read"):
        import_bank_csv(tmp_path / "missing.csv", "b", "spam", "pdq", "me", NOW)
    with pytest.raises(BankImportError, match="not a violating policy"):
        import_bank_csv(path, "b", "benign", "text", "me", NOW)
    with pytest.raises(BankImportError, match="bank name"):
        import_bank_csv(path, "Bad Name!", "spam", "text", "me", NOW)


def test_entries_survive_a_round_trip_through_their_frame():
    entries = [
        BankEntry("removals", "scam", BankKind.PDQ, GOOD_HASH, ConfirmedRemoval("d1", "c1", NOW), OTHER_HASH),
        BankEntry("te", "spam", BankKind.TEXT, SCAM, Imported("f.csv", 3, "me", NOW)),
    ]
    frame = entries_frame(entries)
    assert frame["source"].to_list() == ["confirmed_removal", "import"]
    assert frame["decision_id"].to_list() == ["d1", None] and frame["file_name"].to_list() == [None, "f.csv"]
    assert entries_from_frame(frame) == entries


def test_a_reupload_under_each_evasion_matches_its_bank_entry_and_a_distinct_benign_image_does_not():
    """At DEFAULT_RADIUS, PDQ finds resize, recompress, mirror, border, watermark and brightness
    re-uploads (recall >= 0.86 each in bench/matching.py). A crop or a sticker moves PDQ too far
    (recall <= 0.13 there): those come back through the bank's copy of the image's text, read by OCR,
    which is why a removed image is banked with both."""
    rng = np.random.default_rng(21)
    removed = render_text_image(SCAM, rng, "flyer").image
    removal = ConfirmedRemoval("decision-7", "content-7", NOW)
    banked = bank_removed_image(removed, "removals", "scam", removal, read_images([removed])[0].text)
    assert [e.kind for e in banked.entries] == [BankKind.PDQ, BankKind.TEXT] and not banked.skipped
    benign = [
        render_benign_image(rng).image,
        render_text_image("Lovely walk by the river this morning with the dog", rng, "flyer").image,
    ]
    index = BankIndex(banked.entries + (BankEntry("other", "spam", BankKind.PDQ, GOOD_HASH, removal),))

    uploads = [TRANSFORMS[name].apply(removed, np.random.default_rng(i)) for i, name in enumerate(EVASIONS)]
    codes = [image_codes(image, ORIGINAL_AND_MIRROR) for image in uploads + benign]
    matches = index.match_images(np.stack([c for c, _ in codes]), np.array([q for _, q in codes]), DEFAULT_RADIUS)
    by_pdq = set(matches.filter(pl.col("entry") == 0)["query"].to_list())
    assert {EVASIONS.index(n) for n in ("resize", "recompress", "mirror", "border")} <= by_pdq
    assert not set(matches["query"].to_list()) & {len(uploads), len(uploads) + 1}  # benign: no match at all

    missed = [i for i in range(len(uploads)) if i not in by_pdq]
    texts = read_images([uploads[i] for i in missed] + benign)
    by_text = index.match_texts([t.text for t in texts])
    found = set(by_text.filter(pl.col("entry") == 1)["query"].to_list())
    assert found == set(range(len(missed))), [EVASIONS[missed[i]] for i in set(range(len(missed))) - found]
    hit = by_text.join(entries_frame(index.entries).with_row_index("entry").cast({"entry": pl.Int64}), on="entry")
    assert set(hit["decision_id"]) == {"decision-7"} and set(hit["policy"]) == {"scam"}


def test_a_featureless_removed_image_is_not_banked_by_pdq_and_says_so():
    from PIL import Image

    banked = bank_removed_image(Image.new("RGB", (400, 300), "white"), "b", "spam", ConfirmedRemoval("d", "c"), "")
    assert banked.entries == () and "too featureless" in banked.skipped[0]


def test_bank_index_reports_banks_and_an_empty_frame_when_nothing_matches():
    index = BankIndex([BankEntry("te", "spam", BankKind.TEXT, SCAM, Imported("f.csv", 2, "me", NOW))])
    assert index.banks == ["te"]
    assert index.match_texts(["nothing like it at all, a recipe for lemon cake with icing"]).is_empty()
    empty = index.match_images(np.zeros((1, 4, 32), dtype=np.uint8), np.array([100]), DEFAULT_RADIUS)
    assert empty.is_empty() and empty.columns == ["query", "bank", "policy", "entry", "distance"]


def test_a_day_without_usable_images_matches_nothing_against_a_pdq_bank():
    """A scored day may have no image posts, or only ones too featureless for PDQ: no match, no error."""
    removal = ConfirmedRemoval("decision-9", "content-9", NOW)
    index = BankIndex([BankEntry("removals", "spam", BankKind.PDQ, GOOD_HASH, removal)])
    for codes, quality in (
        (np.zeros((0, 4, 32), dtype=np.uint8), np.zeros(0)),  # no image posted
        (np.zeros((2, 4, 32), dtype=np.uint8), np.array([0, 10])),  # featureless uploads
    ):
        found = index.match_images(codes, quality, DEFAULT_RADIUS)
        assert found.is_empty() and found.columns == ["query", "bank", "policy", "entry", "distance"]
