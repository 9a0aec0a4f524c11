"""Coordinator settings: flags over environment over the TOML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from supervisor.coordinator import Settings


def test_precedence_flags_env_toml_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ziggie.toml"
    config.write_text('default_runner = "claude"\nconcurrency = 4\nmax_request_bytes = 4096\n')
    monkeypatch.setenv("ZIGGIE_CONCURRENCY", "8")
    settings = Settings.load(config, home=tmp_path / "h", max_request_bytes=None)
    assert settings.home == tmp_path / "h"  # flag
    assert settings.concurrency == 8  # env beats TOML
    assert settings.default_runner == "claude"  # TOML beats the default
    assert settings.max_request_bytes == 4096  # an unset flag does not hide the TOML
    assert settings.polling is False  # default
    assert Settings.load(config, concurrency=2).concurrency == 2  # flag beats env


def test_bad_settings_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml")
    config = tmp_path / "bad.toml"
    config.write_text("concurrency = 0\n")
    with pytest.raises(ValidationError, match="concurrency"):
        Settings.load(config)
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ValidationError, match="no_such_setting"):
        Settings.load(config)
    monkeypatch.setenv("ZIGGIE_HOME", str(tmp_path / "from-env"))
    assert Settings.load().home == tmp_path / "from-env"
