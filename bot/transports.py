"""The channels' transports as the settings say (SPEC §6): SMTP or the outbox directory,
the SMS gateway or the outbox file."""

from __future__ import annotations

from email.utils import parseaddr
from functools import partial

from bot.settings import Settings
from channels import mime
from channels.dkim import DkimKey, read_private_key
from channels.sms import SmsTransport, sms_transport_from_settings
from channels.smtp import EmailTransport, email_transport_from_settings
from services.preview import MessageSetup


def email_transport(settings: Settings) -> EmailTransport:
    return email_transport_from_settings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        security=settings.smtp_security.value,
        concurrency=settings.email_concurrency,
        outbox_dir=settings.outbox_dir,
        helo_name=settings.smtp_helo_name,
        mail_from=settings.mail_from,
    )


def dkim_key(settings: Settings) -> DkimKey | None:
    """The key that signs every email, as DKIM_* say; None: unsigned."""
    if settings.dkim_private_key_file is None:
        return None
    domain = settings.dkim_domain or mime.plain_address(parseaddr(settings.mail_from)[1])
    return DkimKey(
        domain.rpartition("@")[2].lower(),
        settings.dkim_selector,
        read_private_key(settings.dkim_private_key_file),
    )


def sms_transport(settings: Settings) -> SmsTransport:
    return sms_transport_from_settings(
        url=settings.sms_gateway_url,
        token=settings.sms_gateway_token,
        sender=settings.sms_sender,
        rate_per_second=settings.sms_rate_per_second,
        outbox_dir=settings.outbox_dir,
    )


def message_setup(settings: Settings) -> MessageSetup:
    """For the bot's previews and test sends: a transport is opened per test send (a rare,
    human act), so the bot holds no idle SMTP connection for the server to drop."""
    return MessageSetup(
        mail_from=settings.mail_from,
        public_base_url=settings.public_base_url,
        secret_key=settings.secret_key,
        dkim=dkim_key(settings),
        open_email=partial(email_transport, settings),
        open_sms=partial(sms_transport, settings),
        to_outbox=frozenset(
            channel
            for channel, server in (
                ("email", settings.smtp_host),
                ("sms", settings.sms_gateway_url),
            )
            if not server
        ),
        sms_opt_out_text=settings.sms_opt_out_text,
        sms_opt_outs=settings.sms_opt_outs,
        bounce_domain=settings.bounce_domain or None,
        default_language=settings.default_language,
    )
