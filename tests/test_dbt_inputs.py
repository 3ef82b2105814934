"""What Python hands dbt: the vocabularies as vars merged into every invocation without clobbering a
partition window, and raw sources rendered from the contracts (each column with its type, each enum
as the var of its vocabulary). tests/test_warehouse.py builds dbt against them for real."""

import json
from dataclasses import replace

import pytest
import yaml

from assets.dbt_inputs import render_raw_sources, with_dbt_vars, write_raw_sources
from ml.raw.contracts import CONTRACTS
from ml.taxonomy import POLICIES, SURFACES


def test_the_vocabularies_join_a_partition_window_in_one_vars_argument():
    args = with_dbt_vars(["build", "--vars", '{"min_date": "2026-10-01", "policies": ["only"]}', "--select", "x"])
    assert args[:3] == ["build", "--select", "x"] and args.count("--vars") == 1
    given = json.loads(args[args.index("--vars") + 1])
    assert given["min_date"] == "2026-10-01" and given["policies"] == ["only"]  # the caller's value wins
    assert given["surfaces"] == list(SURFACES)
    assert json.loads(with_dbt_vars(["parse"])[-1])["policies"] == list(POLICIES)


def test_each_raw_source_has_the_contracts_columns_and_types_and_its_enums_as_vars():
    tables = {t["name"]: t for t in yaml.safe_load(render_raw_sources())["sources"][0]["tables"]}
    assert list(tables) == list(CONTRACTS)
    decisions = tables["decisions"]["columns"]
    assert [c["name"] for c in decisions] == list(CONTRACTS["decisions"].columns)
    by_name = {c["name"]: c for c in decisions}
    assert by_name["decided_at"]["data_type"] == "timestamp" and by_name["decision_id"]["data_type"] == "bigint"
    assert by_name["decision_id"]["data_tests"] == ["unique", "not_null"]
    assert by_name["policy"]["data_tests"] == [{"accepted_values": {"arguments": {"values": "{{ var('policies') }}"}}}]
    assert by_name["decided_at"]["data_tests"] == [{"not_in_future": {"arguments": {"tolerance_hours": 24}}}]


def test_an_enum_that_is_no_vocabulary_is_refused_rather_than_restated(monkeypatch):
    content = CONTRACTS["content"]
    monkeypatch.setitem(CONTRACTS, "content", replace(content, enums={"surface": ("post", "story")}))
    with pytest.raises(ValueError, match="not a vocabulary"):
        render_raw_sources()


def test_an_unchanged_contract_leaves_the_rendered_file_untouched(tmp_path):
    path = write_raw_sources(tmp_path / "_platform__sources.yml")
    before = path.stat().st_mtime_ns
    write_raw_sources(path)
    assert path.stat().st_mtime_ns == before
    path.write_text("stale")
    assert write_raw_sources(path).read_text() == render_raw_sources()
