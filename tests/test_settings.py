"""Settings: each knob is a library dataclass field set by the variable named after it, a bad value is one
line naming that variable, the README's table is the one the sections generate; and the simulated window's
first day is pinned in the home once, read (never written) by everyone else, overridable by
TRUSTLAKE_START_DATE, and it ends yesterday.

Regenerate the README's configuration table after changing a section, from the project root:

    .venv/bin/python -m tests.test_settings
"""

import json
import subprocess
import sys
import typing
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from ml.evaluation.gates import GateConfig
from ml.monitoring import MonitoringThresholds
from orchestration.sections import annotations_in_source
from orchestration.settings import (
    PROJECT_ROOT,
    SECTIONS,
    Settings,
    configuration_table,
    last_complete_day,
    prepare_home,
)

README = PROJECT_ROOT / "README.md"
TABLE_START = "<!-- configuration table: generated from orchestration/settings.py"
TABLE_END = "<!-- end of the configuration table -->"


def settings(home, **env):
    return Settings.from_env({"TRUSTLAKE_HOME": str(home), **env})


def test_an_unpinned_home_ends_its_window_yesterday_and_reading_it_writes_nothing(tmp_path):
    home = tmp_path / "home"
    s = settings(home, TRUSTLAKE_DAYS="12")
    assert s.start_date_source == "default"
    assert s.last_day == last_complete_day() == datetime.now(UTC).date() - timedelta(days=1)
    assert (s.last_day - s.start_date).days + 1 == 12
    assert not home.exists()


def test_the_first_prepare_pins_the_first_day_and_later_settings_keep_it(tmp_path):
    home = tmp_path / "home"
    pinned = prepare_home(settings(home, TRUSTLAKE_DAYS="12"))
    assert pinned.start_date_source == "pinned"
    assert json.loads((home / "platform.json").read_text()) == {"start_date": pinned.start_date.isoformat()}
    # A different TRUSTLAKE_DAYS later (or a later day) no longer moves the first partition.
    assert settings(home, TRUSTLAKE_DAYS="3").start_date == pinned.start_date
    assert prepare_home(settings(home, TRUSTLAKE_DAYS="3")).start_date == pinned.start_date
    assert (home / "dagster" / "dagster.yaml").read_text().count("default_limit: 1") == 1


def test_trustlake_start_date_overrides_the_pin(tmp_path):
    home = tmp_path / "home"
    prepare_home(settings(home))
    s = settings(home, TRUSTLAKE_START_DATE="2026-10-01")
    assert s.start_date.isoformat() == "2026-10-01" and s.start_date_source == "TRUSTLAKE_START_DATE"


def test_a_damaged_pin_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "platform.json").write_text("{not json")
    with pytest.raises(ValueError, match="platform.json is damaged.*delete it"):
        settings(home)


def test_a_dagster_yaml_a_person_wrote_is_kept(tmp_path):
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    own = "storage:\n  postgres: {}\n"
    (home / "dagster" / "dagster.yaml").write_text(own)
    prepare_home(settings(home))
    assert (home / "dagster" / "dagster.yaml").read_text() == own


# -- knobs from the library's dataclasses ---------------------------------------------------------
def test_a_variable_sets_its_field_by_type_and_every_other_field_keeps_the_library_default(tmp_path):
    s = settings(
        tmp_path,
        TRUSTLAKE_GATE_MAX_SOURCE_REGRESSION="0.03",
        TRUSTLAKE_RETRAIN_MIN_NEW_LABELS="500",
        TRUSTLAKE_TEXT_EPOCHS="5",
        TRUSTLAKE_WORLD_SHIFT="slang",
        TRUSTLAKE_WORLD_SHIFT_FROM="2026-10-09",
    )
    assert s.gates == replace(GateConfig(), max_source_regression=0.03)
    assert s.monitoring == replace(MonitoringThresholds(), retrain_min_new_labels=500)
    assert s.text_model.epochs == 5 and s.text_model.batch_size == type(s.text_model)().batch_size
    assert (s.simulator.world_shift, s.simulator.world_shift_from) == ("slang", date(2026, 10, 9))
    assert s.simulator.start_date == s.start_date  # the pinned window, not the simulator's own default


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("TRUSTLAKE_USERS", "many", "TRUSTLAKE_USERS='many' is not a whole number"),
        ("TRUSTLAKE_GATE_MIN_PR_AUC", "high", "TRUSTLAKE_GATE_MIN_PR_AUC='high' is not a number"),
        ("TRUSTLAKE_WORLD_SHIFT_FROM", "monday", "TRUSTLAKE_WORLD_SHIFT_FROM='monday' is not a day (YYYY-MM-DD)"),
        ("TRUSTLAKE_DAYS", "1.5", "TRUSTLAKE_DAYS='1.5' is not a whole number"),
        # Training and serving knobs too, though their dataclasses are built only when first used.
        ("TRUSTLAKE_TEXT_EPOCHS", "three", "TRUSTLAKE_TEXT_EPOCHS='three' is not a whole number"),
        ("TRUSTLAKE_SERVE_BODY_TIMEOUT_S", "10s", "TRUSTLAKE_SERVE_BODY_TIMEOUT_S='10s' is not a number"),
        # A value of the right type that the dataclass itself refuses: its reason, then the variable.
        ("TRUSTLAKE_DRIFT_PSI_WARN", "0.5", "warn < fail (got warn 0.5, fail 0.25) (TRUSTLAKE_DRIFT_PSI_WARN='0.5')"),
        ("TRUSTLAKE_WORLD_SHIFT", "spam_campaign", "needs the day it starts (world_shift_from) ("),
        ("TRUSTLAKE_LANDING_POLL_SECONDS", "0", "TRUSTLAKE_LANDING_POLL_SECONDS=0 must be at least 1"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(tmp_path, variable, value, says):
    with pytest.raises(ValueError) as raised:
        settings(tmp_path, **{variable: value})
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_serving_value_the_limits_refuse_is_named_when_serving_reads_them(tmp_path):
    s = settings(tmp_path, TRUSTLAKE_SERVE_MAX_IN_FLIGHT="-1")
    with pytest.raises(ValueError, match=r"max_in_flight must be positive.*TRUSTLAKE_SERVE_MAX_IN_FLIGHT='-1'"):
        _ = s.serving


@pytest.mark.parametrize("section", [s for s in SECTIONS.values() if s.lazy], ids=lambda s: s.target)
def test_a_lazy_sections_types_read_from_its_source_are_its_annotations(section):
    hints = typing.get_type_hints(section.dataclass())
    assert annotations_in_source(*section.target.split(":"), section.fields) == {f: hints[f] for f in section.fields}


def test_a_former_variable_name_still_sets_its_field_and_two_names_may_not_disagree(tmp_path):
    assert settings(tmp_path, TRUSTLAKE_LIGHTGBM_WORKERS="2").lightgbm.num_workers == 2
    both = settings(tmp_path, TRUSTLAKE_LIGHTGBM_THREADS="1", TRUSTLAKE_LIGHTGBM_THREADS_PER_WORKER="1")
    assert both.lightgbm.threads_per_worker == 1
    with pytest.raises(ValueError, match="TRUSTLAKE_LIGHTGBM_NUM_WORKERS='3' and TRUSTLAKE_LIGHTGBM_WORKERS='2'"):
        _ = settings(tmp_path, TRUSTLAKE_LIGHTGBM_WORKERS="2", TRUSTLAKE_LIGHTGBM_NUM_WORKERS="3").lightgbm


def test_no_two_knobs_share_a_variable():
    names = [v for section in SECTIONS.values() for name in section.fields for v in section.variables(name)]
    assert len(names) == len(set(names))


def test_reading_settings_imports_no_training_serving_or_dagster_library():
    # Every command reads settings: the training and serving dataclasses are built when first used.
    probe = (
        "import sys\nfrom orchestration.settings import Settings\n"
        "Settings.from_env({'TRUSTLAKE_TEXT_EPOCHS': '2', 'TRUSTLAKE_SERVE_MAX_IN_FLIGHT': '4', "
        "'TRUSTLAKE_SERVE_NUM_REPLICAS': '2'})\n"
        "heavy = {'torch', 'lightgbm', 'fastapi', 'sklearn', 'dagster', 'ray'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def readme_table() -> tuple[str, str, str]:
    text = README.read_text()
    start = text.index("\n", text.index(TABLE_START)) + 1
    end = text.index(TABLE_END)
    return text[:start], text[start:end], text[end:]


def test_the_readme_table_is_the_one_the_sections_generate():
    assert readme_table()[1] == configuration_table(), (
        "README.md's configuration table is not what orchestration/settings.py generates: regenerate it "
        "with `.venv/bin/python -m tests.test_settings` and commit the diff"
    )


if __name__ == "__main__":
    before, _, after = readme_table()
    README.write_text(before + configuration_table() + after)
    print(f"wrote the configuration table of {README}", file=sys.stderr)
