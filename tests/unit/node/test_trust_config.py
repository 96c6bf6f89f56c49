"""``[trust] crl_warning_hours``: how long before a CRL's nextUpdate health warns (default 48 h)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.node.config import DEFAULT_CRL_WARNING_HOURS, ConfigError, load_config


def config(tmp_path: Path, trust: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\nname = "520102"\nlevel = "county"\n[trust]\n{trust}\n', "utf-8")
    return path


def test_the_default_warns_two_days_ahead_and_the_key_sets_it(tmp_path: Path) -> None:
    assert load_config(config(tmp_path, "")).trust.crl_warning_hours == DEFAULT_CRL_WARNING_HOURS
    assert DEFAULT_CRL_WARNING_HOURS == 48.0
    assert load_config(config(tmp_path, "crl_warning_hours = 72")).trust.crl_warning_hours == 72.0
    assert load_config(config(tmp_path, "")).added_crls_dir == tmp_path / "state" / "crls"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "must be positive"),
        ("-1.5", "must be positive"),
        ("9000", "at most 8760"),
        ('"48"', "must be a number"),
    ],
)
def test_a_bad_warning_names_the_key(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"trust\.crl_warning_hours: .*{problem}"):
        load_config(config(tmp_path, f"crl_warning_hours = {value}"))


def test_certificate_warning_and_crl_poll_have_defaults_and_bounds(tmp_path: Path) -> None:
    trust = load_config(config(tmp_path, "")).trust
    assert (trust.certificate_warning_days, trust.crl_poll_seconds) == (30.0, 30.0)
    trust = load_config(
        config(tmp_path, "certificate_warning_days = 60\ncrl_poll_seconds = 0")
    ).trust
    assert (trust.certificate_warning_days, trust.crl_poll_seconds) == (60.0, 0.0)
    with pytest.raises(ConfigError, match=r"trust\.certificate_warning_days: must be positive"):
        load_config(config(tmp_path, "certificate_warning_days = 0"))
    with pytest.raises(ConfigError, match=r"trust\.crl_poll_seconds: must be 0 \(off\) to"):
        load_config(config(tmp_path, "crl_poll_seconds = -1"))
