"""Settings: defaults that run, and one clear line naming a bad setting."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings
from models.frequency_caps import FrequencyCap, FrequencyCaps
from models.protection import HoldPolicy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No .env of the developer's may leak in: run from an empty folder.
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("SMTP_", "SMS_", "TELEGRAM_", "HOLD_", "FREQUENCY_CAP_")) or name in {
            "ADMIN_IDS",
            "DATABASE_URL",
            "DEFAULT_TIMEZONE",
            "QUIET_HOURS_SMS",
            "SUMMARY_TIME",
        }:
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings()
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.default_timezone == "Europe/Moscow"
    assert settings.default_phone_region == "RU"
    assert settings.summary_time == time(9, 0)
    assert settings.quiet_hours_sms == (time(21, 0), time(9, 0))
    assert settings.engine_tick_seconds == 5
    assert settings.smtp_host == ""
    assert settings.smtp_helo_name == ""
    assert settings.admin_ids == []


def test_values_are_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_IDS", "111, 222,333")
    monkeypatch.setenv("QUIET_HOURS_SMS", "")
    monkeypatch.setenv("SUMMARY_TIME", "18:30")
    monkeypatch.setenv("SMTP_SECURITY", "starttls")
    monkeypatch.setenv("SMTP_HELO_NAME", "mailer.shop.example")
    settings = load_settings()
    assert settings.admin_ids == [111, 222, 333]
    assert settings.quiet_hours_sms is None
    assert settings.summary_time == time(18, 30)
    assert settings.smtp_security == "starttls"
    assert settings.smtp_helo_name == "mailer.shop.example"


def test_the_hold_policy_defaults_and_reads_its_rates_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().hold_policy() == HoldPolicy(
        complaint_rate=Decimal("0.003"), bounce_rate=Decimal("0.05"), min_sent=200
    )
    monkeypatch.setenv("HOLD_COMPLAINT_RATE", "0.001")
    monkeypatch.setenv("HOLD_BOUNCE_RATE", "1")
    monkeypatch.setenv("HOLD_MIN_SENT", "1")
    assert load_settings().hold_policy() == HoldPolicy(
        complaint_rate=Decimal("0.001"), bounce_rate=Decimal("1"), min_sent=1
    )


def test_frequency_caps_are_read_as_messages_per_period(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().frequency_caps == FrequencyCaps()
    monkeypatch.setenv("FREQUENCY_CAP_EMAIL", " 3/7d ")
    monkeypatch.setenv("FREQUENCY_CAP_SMS", "1/12h")
    caps = load_settings().frequency_caps
    assert caps == FrequencyCaps(
        email=FrequencyCap(3, timedelta(days=7)), sms=FrequencyCap(1, timedelta(hours=12))
    )
    assert (str(caps.email), str(caps.sms)) == ("3/7d", "1/12h")
    monkeypatch.setenv("FREQUENCY_CAP_SMS", "")
    assert load_settings().frequency_caps.sms is None


def test_values_are_read_from_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFAULT_TIMEZONE=Asia/Vladivostok\nWEB_PORT=9000\n")
    settings = load_settings()
    assert settings.default_timezone == "Asia/Vladivostok"
    assert settings.web_port == 9000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEFAULT_TIMEZONE", "Mars/Base", "setting DEFAULT_TIMEZONE: 'Mars/Base' is not a known"),
        ("ADMIN_IDS", "12,abc", "setting ADMIN_IDS: 'abc' is not a Telegram user id"),
        ("SUMMARY_TIME", "9am", "setting SUMMARY_TIME: '9am' is not a time of day"),
        ("QUIET_HOURS_SMS", "21:00", "setting QUIET_HOURS_SMS: '21:00' is not a range"),
        ("ENGINE_TICK_SECONDS", "0", "setting ENGINE_TICK_SECONDS:"),
        ("WEB_PORT", "http", "setting WEB_PORT:"),
        ("SMTP_SECURITY", "ssl", "setting SMTP_SECURITY:"),
        ("DATABASE_URL", "mysql://x", "setting DATABASE_URL: must start with"),
        ("DEFAULT_PHONE_REGION", "XX", "setting DEFAULT_PHONE_REGION:"),
        ("MAIL_FROM", "Shop", "setting MAIL_FROM: 'Shop' is not an address"),
        ("SMTP_HELO_NAME", "mail shop", "setting SMTP_HELO_NAME: 'mail shop' is not a host"),
        ("SMTP_HELO_NAME", "-x.example", "setting SMTP_HELO_NAME: '-x.example' is not a host"),
        ("DKIM_SELECTOR", "cm 2026", "setting DKIM_SELECTOR: 'cm 2026' is not a host name"),
        ("DKIM_DOMAIN", "[10.0.0.1]", "setting DKIM_DOMAIN: '[10.0.0.1]' is not a host name"),
        ("HOLD_BOUNCE_RATE", "5%", "setting HOLD_BOUNCE_RATE: '5%' is not a rate above 0 and"),
        ("HOLD_BOUNCE_RATE", "0", "setting HOLD_BOUNCE_RATE: '0' is not a rate above 0 and"),
        ("HOLD_COMPLAINT_RATE", "1.01", "setting HOLD_COMPLAINT_RATE: '1.01' is not a rate"),
        ("HOLD_COMPLAINT_RATE", "-0.1", "setting HOLD_COMPLAINT_RATE: '-0.1' is not a rate"),
        ("HOLD_COMPLAINT_RATE", "inf", "setting HOLD_COMPLAINT_RATE: 'inf' is not a rate"),
        ("HOLD_MIN_SENT", "0", "setting HOLD_MIN_SENT: Input should be greater than or equal"),
        ("HOLD_MIN_SENT", "many", "setting HOLD_MIN_SENT:"),
        ("FREQUENCY_CAP_SMS", "1/1x", "setting FREQUENCY_CAP_SMS: '1/1x' is not a cap like 1/1d"),
        ("FREQUENCY_CAP_SMS", "0/1d", "setting FREQUENCY_CAP_SMS: '0/1d' is not a cap like"),
        ("FREQUENCY_CAP_EMAIL", "3", "setting FREQUENCY_CAP_EMAIL: '3' is not a cap like 1/1d"),
        ("FREQUENCY_CAP_EMAIL", "day/1", "setting FREQUENCY_CAP_EMAIL: 'day/1' is not a cap"),
    ],
)
def test_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_cli_stops_with_one_line_and_exit_code_2_on_bad_setting(tmp_path: Path) -> None:
    env = {**os.environ, "DEFAULT_TIMEZONE": "Mars/Base", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "chains", "list"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "chainmail: setting DEFAULT_TIMEZONE: 'Mars/Base' is not a known IANA time zone"
    ]
