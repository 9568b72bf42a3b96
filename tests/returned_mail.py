"""Mail that comes back, as real servers write it: Postfix's DSN (RFC 3464), a feedback
loop's ARF report (RFC 5965, as Mail.ru's and Yahoo's look), Exim's and qmail's
non-standard bounces, an out-of-office reply, a person writing to the mailto address."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime


def _headers_of(original: bytes) -> str:
    return original.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").replace("\r\n", "\n")


def _date() -> str:
    return format_datetime(datetime(2026, 12, 4, 10, 0, tzinfo=UTC))


def postfix_dsn(
    original: bytes,
    *,
    to: str,
    recipient: str,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown",
) -> bytes:
    """Postfix's bounce: the reason in words, the status fields, the original's headers."""
    diagnostic = diagnostic.format(recipient=recipient)
    return f"""Return-Path: <>
Received: by mx.example.com (Postfix) id 3F2A1C0123; {_date()}
Date: {_date()}
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="3F2A1C0123.1733306400/mx.example.com"
Message-Id: <20261204100000.3F2A1C0123@mx.example.com>

This is a MIME-encapsulated message.

--3F2A1C0123.1733306400/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mail.example.com[203.0.113.5] said: 550 5.1.1 User unknown

--3F2A1C0123.1733306400/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 3F2A1C0123
Arrival-Date: {_date()}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: {diagnostic}

--3F2A1C0123.1733306400/mx.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{_headers_of(original)}
--3F2A1C0123.1733306400/mx.example.com--
""".replace("\n", "\r\n").encode()


def arf_report(original: bytes, *, to: str, feedback_type: str = "abuse") -> bytes:
    """A feedback loop's report: the original message whole, as Mail.ru sends it."""
    body = original.decode("ascii", "replace").replace("\r\n", "\n")
    return f"""From: Mail.Ru FBL <fbl@corp.mail.ru>
To: {to}
Date: {_date()}
Subject: FBL report
Message-ID: <fbl.4711@corp.mail.ru>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="_----fbl"

--_----fbl
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
203.0.113.25 on {_date()}.

--_----fbl
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: Mail.Ru-FBL/1.0
Version: 1
Original-Mail-From: <news@shop.example>
Arrival-Date: {_date()}
Source-IP: 203.0.113.25
Reported-Domain: shop.example

--_----fbl
Content-Type: message/rfc822
Content-Disposition: inline

{body}
--_----fbl--
""".replace("\n", "\r\n").encode()


def exim_bounce(*, to: str, recipient: str) -> bytes:
    """Exim's own words, no RFC 3464 parts: only a detector reads it."""
    return f"""Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {to}
Subject: Mail delivery failed: returning message to sender
Date: {_date()}
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    host mail.example.net [203.0.113.9]: 550 5.1.1 No such user here

------ This is a copy of the message, including all the headers. ------

Subject: Hello
""".replace("\n", "\r\n").encode()


def out_of_office(*, to: str) -> bytes:
    return f"""From: Ivan <ivan@example.com>
To: {to}
Subject: Out of office: Hello
Date: {_date()}
Auto-Submitted: auto-replied

I am away until Monday and will answer your message then.
""".replace("\n", "\r\n").encode()


def unsubscribe_request(*, to: str) -> bytes:
    """What a mail program sends for the List-Unsubscribe mailto."""
    return f"""From: ivan@example.com
To: {to}
Subject: unsubscribe
Date: {_date()}

""".replace("\n", "\r\n").encode()
