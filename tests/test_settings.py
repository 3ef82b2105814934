"""The simulated window: its first day is pinned in the home once, read (never written) by everyone
else, overridable by TRUSTLAKE_START_DATE, and it ends yesterday."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from orchestration.settings import Settings, last_complete_day, prepare_home


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
