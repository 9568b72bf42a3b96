"""Process settings, read from the environment or `.env` (SPEC §6, §7)."""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel.numbers import list_currencies
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from channels.dkim import read_private_key
from i18n import LANGUAGES
from inbound.imap import imap_mailbox
from models.frequency_caps import FrequencyCap, FrequencyCaps, parse_frequency_cap
from models.protection import HoldPolicy
from models.sms_parts import SmsFrame
from models.sms_stop import DEFAULT_SMS_STOP_WORDS, stop_words

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./chainmail.db"
# An opt-out line longer than a third of a GSM-7 SMS leaves little room for the message.
OPT_OUT_MAX = 50
_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A host name (RFC 5321 Domain) or an address literal such as [192.0.2.1].
_DNS_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_HELO_NAME = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[(?:IPv6:)?[0-9A-Fa-f:.]+\])$")


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


def parse_hh_mm(value: str) -> time:
    match = _HH_MM.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a time of day like 09:00")
    return time(int(match.group(1)), int(match.group(2)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram_bot_token: str = ""
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    # Empty: the bot polls. Else Telegram posts updates to this URL (served by web).
    telegram_webhook_url: str = ""
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    database_url: str = DEFAULT_DATABASE_URL
    default_timezone: str = "Europe/Moscow"
    default_phone_region: str = "RU"
    # The language of customers who have none of their own and whose phone does not say.
    default_language: str = "ru"
    # The shop's currency: amounts shown in the bot, summaries and charts.
    shop_currency: str = "RUB"
    summary_time: Annotated[time, NoDecode] = time(9, 0)
    quiet_hours_sms: Annotated[tuple[time, time] | None, NoDecode] = (time(21, 0), time(9, 0))
    engine_tick_seconds: float = Field(default=5.0, gt=0)
    email_concurrency: int = Field(default=8, ge=1, le=200)
    sms_rate_per_second: float = Field(default=10.0, gt=0)
    # At most N messages of the channel to one customer per period, over all chains
    # (`1/1d`, `3/7d`); None: no cap.
    frequency_cap_email: Annotated[FrequencyCap | None, NoDecode] = None
    frequency_cap_sms: Annotated[FrequencyCap | None, NoDecode] = None

    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    mail_from: str = "Chainmail <chainmail@localhost>"
    # The EHLO name. Empty: the machine's FQDN when it has a dot, else MAIL_FROM's domain.
    smtp_helo_name: str = ""
    # DKIM: the public key is published at {DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.
    dkim_selector: str = ""
    # Empty: the domain of MAIL_FROM (DMARC wants the two aligned).
    dkim_domain: str = ""
    # A PEM RSA private key of at least 2048 bits, readable by this process only (0600 or
    # 0640). Unset: messages are not signed.
    dkim_private_key_file: Path | None = None
    # Where bounces come back: each email's envelope sender is b+<token>@BOUNCE_DOMAIN,
    # its List-Unsubscribe mailto u+<token>@BOUNCE_DOMAIN (docs/email.md). Empty: MAIL_FROM.
    bounce_domain: str = ""
    # `chainmail inbound` (and `run`, when the port is set) receives mail for BOUNCE_DOMAIN.
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int | None = Field(default=None, ge=1, le=65535)
    # imaps://user:password@imap.example.com[:993][/mailbox]: a hosted bounce mailbox,
    # polled by `chainmail inbound` instead of (or beside) the SMTP receiver.
    inbound_imap_url: str = ""

    sms_gateway_url: str = ""
    sms_gateway_token: str = ""
    sms_sender: str = "Chainmail"
    # A line appended to every SMS ("STOP: 0000"), counted in its parts; empty: none.
    sms_opt_out_text: str = Field(default="", max_length=OPT_OUT_MAX)
    # The line for customers reading Russian, English; empty: SMS_OPT_OUT_TEXT.
    sms_opt_out_text_ru: str = Field(default="", max_length=OPT_OUT_MAX)
    sms_opt_out_text_en: str = Field(default="", max_length=OPT_OUT_MAX)
    # Inbound SMS texts that unsubscribe their phone: comma-separated, any case.
    sms_stop_words: Annotated[frozenset[str], NoDecode] = stop_words(DEFAULT_SMS_STOP_WORDS)

    # Automatic hold (models/protection.py): a step's spam complaints or hard bounces
    # reaching these fractions of what it sent, once it sent HOLD_MIN_SENT, pause its chain.
    hold_complaint_rate: Decimal = Decimal("0.003")
    hold_bounce_rate: Decimal = Decimal("0.05")
    hold_min_sent: int = Field(default=200, ge=1)

    outbox_dir: Path = Path("./outbox")
    # Tracking facts (unsubscribes, opens, clicks) wait here while the database is busy.
    spool_dir: Path = Path("./spool")
    public_base_url: str = "http://127.0.0.1:8000"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    # Empty: a random key is generated once and kept in the database, so every
    # process sharing that database signs and checks tracking links alike.
    secret_key: str = ""
    # Empty: the HTTP API refuses every request (401) until a token is set.
    api_token: str = ""
    log_level: str = "INFO"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
            for part in parts:
                if not re.fullmatch(r"-?\d+", part):
                    raise ValueError(f"{part!r} is not a Telegram user id (a whole number)")
            return [int(p) for p in parts]
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known IANA time zone") from None
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        language = value.strip().lower()
        if language not in LANGUAGES:
            raise ValueError(f"{value!r} is not one of {', '.join(LANGUAGES)}")
        return language

    @field_validator("shop_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        currency = value.strip().upper()
        if currency not in list_currencies():
            raise ValueError(f"{value!r} is not a currency code such as RUB")
        return currency

    @field_validator("default_phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a two-letter phone region such as RU")
        return region

    @field_validator("sms_opt_out_text", "sms_opt_out_text_ru", "sms_opt_out_text_en")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("must be one line, such as STOP: 0000")
        return value.strip()

    @field_validator("sms_stop_words", mode="before")
    @classmethod
    def _split_stop_words(cls, value: object) -> object:
        if isinstance(value, str):
            return stop_words(part for part in value.split(",") if part.strip())
        return value

    @field_validator("hold_complaint_rate", "hold_bounce_rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        try:
            rate = Decimal(str(value).strip())
        except InvalidOperation:
            rate = None
        if rate is None or not rate.is_finite() or not 0 < rate <= 1:
            raise ValueError(f"{value!r} is not a rate above 0 and at most 1, such as 0.05 for 5 %")
        return rate

    @field_validator("summary_time", mode="before")
    @classmethod
    def _parse_summary_time(cls, value: object) -> object:
        return parse_hh_mm(value) if isinstance(value, str) else value

    @field_validator("quiet_hours_sms", mode="before")
    @classmethod
    def _parse_quiet_hours(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"{value!r} is not a range like 21:00-09:00")
        return parse_hh_mm(start), parse_hh_mm(end)

    @field_validator("frequency_cap_email", "frequency_cap_sms", mode="before")
    @classmethod
    def _parse_frequency_cap(cls, value: object) -> object:
        return parse_frequency_cap(value) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("public_base_url", "telegram_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError(f"{value!r} must be an https:// URL: Telegram only posts to HTTPS")
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        address = parseaddr(value)[1]
        local, at, domain = address.rpartition("@")
        domain_ok = "." in domain or domain == "localhost"
        if not (local and at and domain_ok and address.isascii()):
            raise ValueError(f"{value!r} is not an address like Shop <news@shop.example>")
        return value

    @field_validator("smtp_helo_name", "dkim_selector", "dkim_domain", "bounce_domain")
    @classmethod
    def _host_name(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        # EHLO also takes an address literal; DKIM names are DNS names only.
        pattern = _HELO_NAME if info.field_name == "smtp_helo_name" else _DNS_NAME
        if value and (len(value) > 253 or not pattern.match(value)):
            raise ValueError(f"{value!r} is not a host name like mail.shop.example")
        return value

    @field_validator("dkim_private_key_file", mode="before")
    @classmethod
    def _dkim_key(cls, value: object, info: ValidationInfo) -> Path | None:
        if value is None or not str(value).strip():
            return None
        value = Path(str(value).strip())
        if not info.data.get("dkim_selector"):
            raise ValueError("needs DKIM_SELECTOR too (the key is found at <selector>._domainkey)")
        # Read now so that a key that cannot sign stops the process at start-up.
        read_private_key(value)
        return value

    @field_validator("inbound_smtp_port", mode="before")
    @classmethod
    def _optional_port(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("inbound_smtp_port")
    @classmethod
    def _port_needs_domain(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("bounce_domain"):
            raise ValueError("needs BOUNCE_DOMAIN too: the receiver takes mail only for it")
        return value

    @field_validator("inbound_imap_url")
    @classmethod
    def _imap_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            imap_mailbox(value)
        return value

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def sms_frame(self) -> SmsFrame:
        return SmsFrame(self.sms_opt_out_text, self.public_base_url, self.sms_opt_outs)

    @property
    def sms_opt_outs(self) -> tuple[tuple[str, str], ...]:
        """SMS_OPT_OUT_TEXT_<LANGUAGE> that are set, as SmsFrame.opt_outs."""
        given = (("ru", self.sms_opt_out_text_ru), ("en", self.sms_opt_out_text_en))
        return tuple((language, line) for language, line in given if line)

    @property
    def frequency_caps(self) -> FrequencyCaps:
        """FREQUENCY_CAP_*, for the engine's claim and the activation forecast."""
        return FrequencyCaps(email=self.frequency_cap_email, sms=self.frequency_cap_sms)

    def hold_policy(self) -> HoldPolicy:
        """HOLD_*, for whoever records bounces or complaints (the engine, `inbound`)."""
        return HoldPolicy(
            complaint_rate=self.hold_complaint_rate,
            bounce_rate=self.hold_bounce_rate,
            min_sent=self.hold_min_sent,
        )


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"setting {name}: {message}") from None
