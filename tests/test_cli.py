"""The command line itself: its command tree, usage errors as one line with exit code 2, the
registry subcommands, and a start-up that imports none of Dagster, dbt, Ray or PyTorch."""

import json
import subprocess
import sys

import pytest

from ml.registry import Registry, RegistryEntry
from orchestration.cli import main
from orchestration.settings import PROJECT_ROOT
from tests.test_registry import entry


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    registry = Registry(home / "models")
    for v in ("a", "b"):
        registry.register(RegistryEntry.from_dict(entry(home / "models", v)))
    monkeypatch.setenv("TRUSTLAKE_HOME", str(home))
    return home


def test_help_lists_every_command_and_imports_nothing_heavy():
    probe = (
        "import sys\nfrom orchestration.cli import main\ncode = main(['--help'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'dbt', 'ray', 'torch', 'lightgbm'})\n"
        "print('heavy:', heavy, 'code:', code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy: [] code: 0", result.stdout
    listed = [
        line.split()[0]
        for line in result.stdout.split("Commands:")[1].splitlines()[1:]
        if line.startswith("  ") and not line.startswith("      ")
    ]
    assert listed == ["run", "ui", "sql", "models", "score", "serve", "labels", "bank", "land", "prepare"]


@pytest.mark.parametrize(
    "args, says",
    [
        (["run", "--bogus"], "trustlake run: No such option '--bogus'"),
        (["run", "--days", "x"], "trustlake run: Invalid value for '--days'"),
        (["sql"], "trustlake sql: Missing argument 'QUERY'"),
        (["sql", "select 1", "--format", "xml"], "trustlake sql: Invalid value for '--format'"),
        (["score", "--text-column", "body"], "trustlake score: Missing option '--input'"),
        (["models", "show"], "trustlake models show: Missing argument 'VERSION'"),
        (["models", "frobnicate"], "trustlake models: No such command 'frobnicate'"),
        (["nope"], "trustlake: No such command 'nope'"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_command_and_exits_2(capsys, args, says):
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(says) and "--help`)" in err, err


def test_a_bare_group_prints_its_help_and_exits_2(capsys):
    code, out, err = cli(capsys, "models")
    assert code == 2
    assert all(f"  {name} " in err for name in ("list", "show", "promote", "rollback")), err


def test_models_subcommands_promote_show_and_roll_back(home, capsys):
    code, out, _ = cli(capsys, "models", "promote", "a")
    assert (code, out) == (0, "champion is now a (was none)\n")
    code, out, _ = cli(capsys, "models", "promote", "b", "--reason", "better on QA gold")
    assert (code, out) == (0, "champion is now b (was a)\n")
    code, out, _ = cli(capsys, "models", "show", "b")
    assert code == 0 and json.loads(out)["status"] == "champion"
    code, out, _ = cli(capsys, "models", "list")
    assert code == 0 and [line.split()[:3] for line in out.splitlines()[2:]] == [
        ["a", "baseline", "retired"],
        ["b", "baseline", "champion"],
    ]
    code, out, _ = cli(capsys, "models", "rollback")
    assert (code, out) == (0, "champion is now a (rolled back b)\n")
    history = Registry(home / "models").history()
    assert [(h["version"], h["reason"]) for h in history if h["action"] == "promote"][-1] == ("b", "better on QA gold")
    assert history[-1]["action"] == "rollback" and history[-1]["reason"] == "manual change from the CLI"
    assert all(h["actor"].startswith("cli:") for h in history if h["action"] in ("promote", "rollback"))


def test_a_registry_refusal_is_one_line_and_exits_2(home, capsys):
    code, out, err = cli(capsys, "models", "rollback")
    assert code == 2 and out == ""
    assert err == "trustlake models: nothing to roll back to: there has been no earlier champion\n"
    code, out, err = cli(capsys, "models", "show", "zzz")
    assert code == 2 and err.startswith("trustlake models: unknown model version 'zzz' (known: a, b)")


def test_a_bad_variable_is_one_line_after_parsing_so_help_still_works(home, capsys, monkeypatch):
    monkeypatch.setenv("TRUSTLAKE_SERVE_MAX_IN_FLIGHT", "many")
    code, out, err = cli(capsys, "models", "list")
    assert code == 2 and out == "" and err.count("\n") == 1 and "TRUSTLAKE_SERVE_MAX_IN_FLIGHT" in err
    code, out, err = cli(capsys, "models", "list", "--help")
    assert code == 0 and "every registered model version" in out
