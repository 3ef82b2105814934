"""The registry survives being copied, moved and damaged: relative artifact paths, validated
reads that name the damaged file and the command that restores it, and a CLI without tracebacks.

No model is trained here: entries point at plain version directories (tests/test_serving_hardening.py
serves real models from copied and damaged homes).
"""

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from ml.registry import Registry, RegistryEntry, RegistryError
from tests.helpers import run_cli


def entry(models: Path, version: str) -> dict:
    (models / version).mkdir(parents=True, exist_ok=True)
    return {
        "version": version,
        "kind": "baseline",
        "path": str(models / version),
        "dataset_version": "d",
        "code_version": "c0ffee",
        "params": {},
        "operating_points": {},
        "metrics": {"test_macro_pr_auc": 0.5, "gates_passed": True},
    }


@pytest.fixture
def registry(tmp_path) -> Registry:
    models = tmp_path / "home" / "models"
    registry = Registry(models)
    for v in ("a", "b"):
        registry.register(RegistryEntry.from_dict(entry(models, v)))
    registry.promote("a", "first", "test")
    registry.promote("b", "better", "test")
    return registry


def test_artifact_paths_are_stored_relative_to_the_models_directory(registry):
    stored = json.loads(registry.path.read_text())["models"]
    assert {v: e["path"] for v, e in stored.items()} == {"a": "a", "b": "b"}
    assert registry.artifact_dir(registry.get("b")) == registry.dir / "b"


def test_a_moved_home_resolves_relative_paths_under_its_own_models_directory(registry, tmp_path):
    moved = tmp_path / "elsewhere" / "home"
    moved.parent.mkdir()
    registry.dir.parent.rename(moved)
    here = Registry(moved / "models")
    assert here.artifact_dir(here.champion()) == moved / "models" / "b"


def test_absolute_paths_written_by_older_code_resolve_in_a_copied_home(tmp_path):
    models = tmp_path / "copy" / "models"
    table = {"models": {}, "history": []}
    for v, path in (
        ("old-home", "/srv/original-home/models/old-home"),  # another home, gone
        ("here", str(models / "here")),  # this home, absolute
        ("kept-outside", str(tmp_path / "shared" / "kept-outside")),  # outside any models dir
        ("lost", "/srv/original-home/models/lost"),
    ):  # nowhere
        e = {**entry(models, v), "path": path, "status": "candidate", "created_at": "2026-10-01T00:00:00+00:00"}
        table["models"][v] = e
    (tmp_path / "shared" / "kept-outside").mkdir(parents=True)
    (models / "kept-outside").rmdir()
    (models / "lost").rmdir()
    (models / "registry.json").write_text(json.dumps(table))
    registry = Registry(models)
    assert registry.artifact_dir(registry.get("old-home")) == models / "old-home"
    assert registry.artifact_dir(registry.get("here")) == models / "here"
    assert registry.artifact_dir(registry.get("kept-outside")) == tmp_path / "shared" / "kept-outside"
    with pytest.raises(RegistryError, match=r"model lost: its artifact directory is missing .*models/lost"):
        registry.artifact_dir(registry.get("lost"))


def test_a_copied_home_prefers_its_own_copy_over_the_original_home(tmp_path):
    original = tmp_path / "original" / "models"
    copy = tmp_path / "copy" / "models"
    for models in (original, copy):
        e = {
            **entry(models, "v1"),
            "path": str(original / "v1"),
            "status": "champion",
            "created_at": "2026-10-01T00:00:00+00:00",
        }
        (models / "registry.json").write_text(json.dumps({"models": {"v1": e}, "history": []}))
    # The original still exists; the copy must not reach back into it.
    assert Registry(copy).artifact_dir(Registry(copy).champion()) == copy / "v1"


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "the file is empty"),
        (lambda text: "[]", "expected an object"),
        (lambda text: text.replace('"status": "retired"', '"status": "maybe"', 1), "unknown status 'maybe'"),
        (
            lambda text: json.dumps(
                {**json.loads(text), "models": {"a": {"version": "a"}, "b": json.loads(text)["models"]["b"]}}
            ),
            "model 'a' lacks kind, path",
        ),
    ],
)
def test_every_read_of_a_damaged_registry_names_the_file_and_the_restore_command(registry, damage, problem):
    good = registry.path.read_text()
    registry.path.write_text(damage(good))
    reads = {
        "list": registry.list,
        "champion": registry.champion,
        "history": registry.history,
        "get": lambda: registry.get("a"),
        "register": lambda: registry.register(RegistryEntry.from_dict(entry(registry.dir, "c"))),
        "promote": lambda: registry.promote("a", "x", "test"),
        "rollback": lambda: registry.rollback("test"),
    }
    for name, call in reads.items():
        with pytest.raises(RegistryError) as caught:
            call()
        message = str(caught.value)
        assert str(registry.path) in message and problem in message, name
        assert f"cp {registry.last_good} {registry.path}" in message, name
    # Nothing was written over the damage, and the copy it names is the last committed table.
    assert json.loads(registry.last_good.read_text()) == json.loads(good)
    command = str(caught.value).split("with: ", 1)[1]
    subprocess.run(shlex.split(command), check=True)
    assert registry.champion().version == "b"
    assert [h["version"] for h in registry.history()] == ["a", "b"]


def test_a_deleted_registry_with_a_last_good_copy_is_damage_not_an_empty_registry(registry):
    registry.path.unlink()
    with pytest.raises(RegistryError, match="the file is missing.*restore the last good copy"):
        registry.champion()
    with pytest.raises(RegistryError, match="the file is missing"):
        registry.register(
            RegistryEntry.from_dict(entry(registry.dir, "c"))
        )  # would otherwise start an empty table over the history
    assert {e["version"] for e in json.loads(registry.last_good.read_text())["models"].values()} == {"a", "b"}


def test_damage_without_a_usable_last_good_copy_says_to_restore_from_a_backup(registry):
    registry.path.write_bytes(b"\x00\xff" * 10)
    registry.last_good.write_text("{")
    with pytest.raises(
        RegistryError,
        match=r"not UTF-8 text.*no usable last good copy \(registry.json.last-good: "
        r"not valid JSON.*restore registry.json from a backup",
    ):
        registry.list()


def test_cli_on_a_damaged_registry_prints_one_line_naming_the_file_and_exits_2(registry, tmp_path):
    home = registry.dir.parent
    registry.path.write_text(registry.path.read_text()[:100])
    texts = tmp_path / "posts.csv"
    texts.write_text("body\nhello there\n")
    for args in (
        ("models", "list"),
        ("models", "show", "a"),
        ("score", "--input", str(texts), "--text-column", "body"),
    ):
        result = run_cli(home, *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (args, result.stderr)
        assert str(registry.path) in lines[0] and "cp " in lines[0], (args, lines[0])
