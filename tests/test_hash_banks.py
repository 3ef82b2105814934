"""Hash banks in the pipeline: `hash_banks` built from confirmed removals and imported banks, `bank_matches`
matching each day's posts against the banks as they stood that day, and the enforcement policy's
`bank_match` rule acting on them in batch scoring with the entry's provenance.

A small lake is written by hand (two days, a dozen posts, images hashed without OCR) and the two assets
are materialized in process; the bank is imported through the real `trustlake bank import` process."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, date, datetime

import dagster as dg
import numpy as np
import polars as pl
import pytest

from assets.banks import banks_assets
from assets.resources import LakehouseResource
from ml.features.images import IMAGE_TEXT, IMAGE_TEXT_SCHEMA
from ml.images.render import render_benign_image, render_text_image
from ml.images.transforms import TRANSFORMS
from ml.lake import Lake
from ml.matching.bank_matches import (
    BANK_FEATURES,
    BANK_MATCHES,
    MATCH_SCHEMA,
    NO_PDQ_MATCH,
    bank_match_features,
    with_bank_matches,
)
from ml.matching.bank_sources import REMOVALS_BANK, imports_version, read_bank_table
from ml.matching.pdq import ORIGINAL_AND_MIRROR, codes_to_hex, image_codes
from ml.scoring import load_champion, score_frame
from tests.helpers import labelled_training_frame, run_cli, small_champion

D1, D2 = date(2026, 1, 5), date(2026, 1, 6)
FLYER = "Cheap followers and likes, message us on WhatsApp today for a special price"
SCAM = "Claim your prize now, send your bank details to win the lottery today"
INSULT = "You are all idiots and should leave this town forever and never come back"
PARTITIONS = dg.DailyPartitionsDefinition(start_date=D1.isoformat(), end_date="2026-01-07")


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour)


def image_bytes(image) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The lake, and for each post what it is. Day 1: an image post (1) removed and confirmed by QA only on
    day 2, a text post (2) removed and upheld on appeal, a text post (3) whose removal was overturned, an
    image post (4) removed but never confirmed, a copy of 1 (5) posted before 1 was confirmed. Day 2: a
    mirrored copy of 1 (6), a near-copy of 2 (7), a benign picture (8), the image of 4 again (9), an image
    whose hash an imported bank holds (10), a near-copy of 3 (11)."""
    home = tmp_path_factory.mktemp("banks") / "home"
    lake = Lake(home)
    rng = np.random.default_rng(11)
    flyer = render_text_image(FLYER, rng, "flyer").image
    unconfirmed = render_text_image("Buy cheap watches here, best prices in town, fast shipping", rng, "meme").image
    imported = render_text_image("Crypto doubling scheme, send coins and get twice back", rng, "screenshot").image
    images = {
        1: (flyer, FLYER),
        4: (unconfirmed, "Buy cheap watches here, best prices in town, fast shipping"),
        5: (TRANSFORMS["resize"].apply(flyer, np.random.default_rng(1)), FLYER),
        6: (TRANSFORMS["mirror"].apply(flyer, np.random.default_rng(2)), FLYER),
        8: (render_benign_image(rng).image, ""),
        9: (unconfirmed, "Buy cheap watches here, best prices in town, fast shipping"),
        10: (imported, "Crypto doubling scheme, send coins and get twice back"),
    }
    texts = {2: SCAM, 3: INSULT, 7: SCAM.replace("today", "right now!!"), 11: INSULT.replace("town", "city")}
    created = {1: at(D1, 9), 2: at(D1, 9), 3: at(D1, 10), 4: at(D1, 11), 5: at(D1, 15)}
    created |= {i: at(D2, 9 + i % 3) for i in range(6, 12)}
    content, read, shas = [], {}, {}
    for cid in sorted(created):
        row = {"content_id": cid, "author_id": cid, "created_at": created[cid], "surface": "post", "language": "en"}
        if cid in images:
            image, shown = images[cid]
            sha, _ = image_bytes(image)
            shas[cid] = sha
            path = f"media/{sha[:2]}/{sha}.png"
            codes, quality = image_codes(image, ORIGINAL_AND_MIRROR)
            read[sha] = {
                "media_sha256": sha,
                "media_path": path,
                "text": shown,
                "confidence": 0.9,
                "boxes": 1,
                "seconds": 0.1,
                "rejected": "",
                "pdq": codes_to_hex(codes[:1])[0],
                "pdq_quality": quality,
                "pdq_codes": codes.tobytes(),
                "read_at": created[cid],
                "day": created[cid].date(),
            }
            row |= {"text": "lol", "media_type": "image", "media_sha256": sha, "media_path": path}
        else:
            row |= {"text": texts[cid], "media_type": "text", "media_sha256": None, "media_path": None}
        content.append(row | {"text_hash": str(cid), "has_link": False, "has_phone": False})
    decisions = pl.DataFrame(
        {
            "decision_id": [101, 102, 103, 104],
            "content_id": [1, 2, 3, 4],
            "moderator_id": [9] * 4,
            "review_reason": ["report"] * 4,
            "policy": ["spam", "scam", "harassment", "spam"],
            "action": ["remove"] * 4,
            "decided_at": [at(D1, 12)] * 4,
        }
    )
    appeals = pl.DataFrame(
        {
            "appeal_id": [201, 202],
            "decision_id": [102, 103],
            "content_id": [2, 3],
            "appellant_id": [2, 3],
            "appealed_at": [at(D1, 13)] * 2,
            "resolved_at": [at(D1, 18)] * 2,
            "outcome": ["upheld", "overturned"],
        }
    )
    qa = pl.DataFrame(
        {"audit_id": [301], "content_id": [1], "auditor_id": [7], "gold_policy": ["spam"], "audited_at": [at(D2, 8)]}
    )
    frames = {"content": (pl.DataFrame(content), "created_at"), "decisions": (decisions, "decided_at")}
    frames |= {"appeals": (appeals, "resolved_at"), "qa_audits": (qa, "audited_at")}
    for table, (frame, column) in frames.items():
        for day in (D1, D2):
            lake.write_partition(table, day, frame.filter(pl.col(column).dt.date() == day))
    read_frame = pl.DataFrame(list(read.values()))
    for day in (D1, D2):
        rows = read_frame.filter(pl.col("day") == day).drop("day").cast(IMAGE_TEXT_SCHEMA)
        lake.write_partition(IMAGE_TEXT, day, rows, root=lake.features)
    return {"home": home, "lake": lake, "shas": shas, "imported_hash": read[shas[10]]["pdq"]}


def materialize(home, *keys_and_days):
    resource = LakehouseResource(
        home=str(home),
        corpora_dir="",
        start_date=D1.isoformat(),
        seed=1,
        users=10,
        content_per_day=10,
        world_shift="",
        world_shift_from="",
        world_shift_share=0.0,
        image_share=0.0,
    )
    hash_banks, bank_matches = banks_assets(PARTITIONS)
    built = dg.materialize([hash_banks], resources={"lakehouse": resource})
    assert built.success
    days = {"dagster/asset_partition_range_start": D1.isoformat(), "dagster/asset_partition_range_end": D2.isoformat()}
    matched = dg.materialize([bank_matches], resources={"lakehouse": resource}, tags=days)
    assert matched.success
    return built


@pytest.fixture(scope="module")
def banked(world, tmp_path_factory):
    """The world after a bank import with bad rows (through the CLI) and a build of both assets."""
    csv = tmp_path_factory.mktemp("import") / "te-export.csv"
    csv.write_text(
        "pdq,quality\n"
        f"{world['imported_hash']},100\n"
        "not-a-hash,100\n"
        f"{'0' * 64},90\n"
        f"{world['imported_hash']},100\n"
        f"{world['imported_hash'][:-1]}0,10\n"
    )
    before = imports_version(world["lake"])
    result = run_cli(world["home"], "bank", "import", str(csv), "--bank", "te-scam", "--policy", "scam", timeout=120)
    built = materialize(world["home"])
    return {**world, "cli": result, "before": before, "built": built}


def test_an_imported_bank_keeps_its_good_rows_and_quarantines_the_rest_with_their_reasons(banked):
    result, lake = banked["cli"], banked["lake"]
    assert result.returncode == 0, result.stderr
    assert "1 pdq entries of bank 'te-scam' (policy scam) kept" in result.stdout
    assert "4 of 5 rows quarantined in" in result.stderr
    (rows,) = (lake.quarantine_dir / "bank_imports").glob("*.quarantined-rows.csv")
    assert str(rows) in result.stderr
    reasons = pl.read_csv(rows)
    assert reasons["line"].to_list() == [3, 4, 5, 6]
    assert reasons["reason"][0].startswith("not a PDQ hash")
    assert reasons["reason"][1].startswith("degenerate PDQ hash")
    assert reasons["reason"][2] == "duplicate of line 2"
    assert reasons["reason"][3].startswith("PDQ quality 10 is below 50")
    assert "4 quarantined" in rows.with_name(rows.name + ".reason.txt").read_text()
    # The import changed what the run must rebuild: hash_banks' version of its outside inputs.
    assert imports_version(lake) != banked["before"]
    assert banked["built"].asset_materializations_for_node("hash_banks")[0].tags["dagster/data_version"] == (
        imports_version(lake)
    )


def test_hash_banks_holds_confirmed_removals_and_the_import_with_provenance(banked):
    table = read_bank_table(banked["lake"])
    removals = table.filter(pl.col("bank") == REMOVALS_BANK)
    # 1 (QA) as an image and its text, 2 (appeal upheld) as text; 3 was overturned, 4 never confirmed.
    assert sorted(zip(removals["content_id"], removals["kind"])) == [("1", "pdq"), ("1", "text"), ("2", "text")]
    assert set(removals.filter(pl.col("content_id") == "1")["decision_id"]) == {"101"}
    assert removals.filter(pl.col("content_id") == "1")["confirmed_at"][0].replace(tzinfo=None) == at(D2, 8)
    image = removals.filter(pl.col("kind") == "pdq").row(0, named=True)
    assert image["policy"] == "spam" and len(image["robust"]) == 64
    imported = table.filter(pl.col("bank") == "te-scam").row(0, named=True)
    assert (imported["source"], imported["value"], imported["row_number"]) == ("import", banked["imported_hash"], 2)
    assert imported["file_name"] == "te-export.csv"


def test_each_day_matches_the_banks_as_they_stood_that_day_and_never_an_item_its_own_entry(banked):
    lake = banked["lake"]
    day1 = lake.read_partition(BANK_MATCHES, D1, root=lake.scores)
    day2 = lake.read_partition(BANK_MATCHES, D2, root=lake.scores)
    # Day 1: 1 and 2 do not match their own entries; 5 copies 1 before QA confirmed it (day 2).
    assert day1.is_empty()
    closest = {r["content_id"]: r for r in day2.filter("closest").iter_rows(named=True)}
    assert set(closest) == {6, 7, 10}  # not the benign 8, the unconfirmed 9, the overturned 11
    assert (closest[6]["kind"], closest[6]["bank"], closest[6]["entry_content_id"]) == ("pdq", REMOVALS_BANK, "1")
    assert closest[6]["distance"] <= 18
    assert closest[6]["provenance"] == "confirmed removal: decision 101 of content 1, confirmed 2026-01-06 08:00 UTC"
    assert (closest[7]["kind"], closest[7]["decision_id"], closest[7]["policy"]) == ("text", "102", "scam")
    assert closest[10]["provenance"].startswith("imported from te-export.csv line 2 by ")
    # 6 matched the removed image's text too; its closest is the image match.
    assert sorted(day2.filter(pl.col("content_id") == 6)["kind"]) == ["pdq", "text"]


def test_the_risk_models_bank_features_see_only_entries_confirmed_before_the_item_was_posted():
    # bank_matches holds a day's matches against the bank as it stood at the end of the day; a feature
    # must not: item 1 was posted at 10:00, before the 18:00 confirmation of the entry it matches.
    confirmed = datetime(2026, 1, 5, 18, tzinfo=UTC)
    items = pl.DataFrame({"content_id": [5, 1, 2, 3, 4], "created_at": [at(D1, h) for h in (9, 10, 20, 11, 12)]})

    def match(cid, kind, distance=None, jaccard=None, entry_confirmed_at=confirmed):
        row = dict.fromkeys(MATCH_SCHEMA)
        source = "import" if entry_confirmed_at is None else "confirmed_removal"
        return row | {
            "content_id": cid,
            "kind": kind,
            "distance": distance,
            "jaccard": jaccard,
            "source": source,
            "entry_confirmed_at": entry_confirmed_at,
            "closest": False,
        }

    matches = pl.DataFrame(
        [
            match(1, "pdq", distance=12),
            match(2, "pdq", distance=12),
            match(3, "pdq", distance=16, entry_confirmed_at=None),  # an imported entry counts whenever imported
            match(4, "pdq", distance=10, entry_confirmed_at=None),
            match(4, "pdq", distance=4, entry_confirmed_at=None),
            match(4, "text", jaccard=0.6, entry_confirmed_at=None),
            match(4, "text", jaccard=0.9, entry_confirmed_at=None),
        ],
        schema=MATCH_SCHEMA,
    )
    features = bank_match_features(items, matches)
    assert features.columns == ["content_id", *BANK_FEATURES]
    assert features.rows() == [
        (5, NO_PDQ_MATCH, 0.0),  # matched nothing
        (1, NO_PDQ_MATCH, 0.0),  # its only match was confirmed after it was posted
        (2, 12, 0.0),
        (3, 16, 0.0),
        (4, 4, pytest.approx(0.9)),  # the closest image and the nearest text
    ]


def test_scoring_reads_the_bank_features_of_each_days_matches(banked):
    lake = banked["lake"]
    content = lake.read_table("content").filter(pl.col("created_at").dt.date() == D2).sort("content_id")
    frame = with_bank_matches(content, lake.read_partition(BANK_MATCHES, D2, root=lake.scores))
    by_id = {r["content_id"]: r for r in frame.iter_rows(named=True)}
    assert by_id[6]["bank_pdq_distance"] <= 18 and by_id[6]["bank_text_jaccard"] >= 0.5  # mirrored copy of 1
    assert by_id[7]["bank_pdq_distance"] == NO_PDQ_MATCH and by_id[7]["bank_text_jaccard"] >= 0.5
    assert by_id[10]["bank_pdq_distance"] <= 18  # the imported bank's image
    for cid in (8, 9, 11):  # benign, never confirmed, overturned
        assert (by_id[cid]["bank_pdq_distance"], by_id[cid]["bank_text_jaccard"]) == (NO_PDQ_MATCH, 0.0)


@pytest.fixture(scope="module")
def champion(pool, tmp_path_factory):
    models = tmp_path_factory.mktemp("banks-champion") / "models"
    frame, _ = labelled_training_frame(pool, seed=43, days=6, rows=1500)
    small_champion(frame, models)
    return load_champion(models)


def test_batch_scoring_removes_bank_matches_by_the_bank_rule_and_says_which_entry(banked, champion):
    lake = banked["lake"]
    content = lake.read_table("content").filter(pl.col("created_at").dt.date() == D2).sort("content_id")
    frame = with_bank_matches(content, lake.read_partition(BANK_MATCHES, D2, root=lake.scores))
    scored = pl.concat([frame.select("content_id"), score_frame(champion, frame)], how="horizontal")
    by_id = {r["content_id"]: r for r in scored.iter_rows(named=True)}
    for cid in (6, 7, 10):
        assert (by_id[cid]["action"], by_id[cid]["decided_by"]) == ("remove", "known_bad_content")
    assert by_id[6]["bank_match"] == (
        "confirmed_removals (spam): confirmed removal: decision 101 of content 1, confirmed 2026-01-06 08:00 UTC"
    )
    assert by_id[10]["bank_match"].startswith("te-scam (scam): imported from te-export.csv line 2 by ")
    for cid in (8, 9, 11):
        assert by_id[cid]["decided_by"] != "known_bad_content" and by_id[cid]["bank_match"] is None


def test_the_launch_backtest_acts_on_the_days_bank_matches_as_batch_scoring_does(banked, champion):
    # A launch's predicted removals include the bank rule's, for the candidate and the champion alike.
    from assets.scoring import RAW_INPUTS, days_bank_matches
    from ml.features.images import IMAGE_TEXT, image_text_table
    from ml.launch.impact import backtest
    from ml.raw.contracts import CONTRACTS

    lake = banked["lake"]
    # This hand-built lake has no accounts or reports: the backtest reads them as empty tables.
    raw = {t: lake.read_table(t).drop("date") if lake.partitions(t) else CONTRACTS[t].empty() for t in RAW_INPUTS}
    raw[IMAGE_TEXT] = image_text_table(lake)
    with_matches = backtest(raw, (D2, D2), champion, champion, days_bank_matches(lake, [D2]))
    without = backtest(raw, (D2, D2), champion, champion)
    acted = {r["content_id"]: r for r in with_matches.iter_rows(named=True)}
    for cid in (6, 7, 10):
        assert acted[cid]["candidate_action"] == acted[cid]["champion_action"] == "remove"
    assert (
        with_matches.filter(pl.col("candidate_action") == "remove").height
        > without.filter(pl.col("candidate_action") == "remove").height
    )


def test_bank_list_shows_each_bank_and_whether_the_next_run_has_yet_to_build_it_in(banked, tmp_path):
    listed = run_cli(banked["home"], "bank", "list", timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {tuple(line.split()[:5]) for line in listed.stdout.splitlines()[1:]}
    assert ("te-scam", "pdq", "scam", "import", "1") in rows
    assert ("confirmed_removals", "pdq", "spam", "confirmed_removal", "1") in rows
    assert all(line.endswith("built") for line in listed.stdout.splitlines()[1:])
