"""Every text the channel layer puts in front of people, in one place.

Footer wording goes to the shop's customers, in each one's language (translated by
the catalogues, i18n/). Details go into `deliveries.reason` and the bot's reports,
read by managers and operators.
"""

from i18n import N_

# The visible unsubscribe link every email carries (Gmail's bulk-sender rules).
UNSUBSCRIBE_TEXT_FOOTER = N_("To stop receiving these emails: {url}")
UNSUBSCRIBE_HTML_LINK = N_("Unsubscribe from these emails")

# Template problems, prefixed with the part of the message they are in.
PART_SUBJECT = "subject"
PART_TEXT = "text"
PART_HTML = "HTML"
PART_SMS = "SMS text"
TEMPLATE_SYNTAX = "{part}: line {line}: {message}"
TEMPLATE_RUNTIME = "{part}: {error}"
RENDERED_TOO_LONG = "the rendered text is longer than {limit:,} characters"
TOO_DEEP = "the template is nested too deeply"
ADDRESS_UNUSABLE = "address {address!r} cannot be used in an email: {why}"
ADDRESS_CONTROL = "it contains a line break or control character"
ADDRESS_SHAPE = "it is not of the form name@domain"
ADDRESS_SMTPUTF8 = "its local part is not ASCII (needs SMTPUTF8)"
ADDRESS_DOMAIN = "its domain is not a valid host name"

# What a transport says about a send that did not end with a plain "accepted".
CONNECT_FAILED = "cannot connect to {server}: {error}"
CONNECTION_LOST = "connection failed before the message was sent: {error}"
OUTCOME_UNKNOWN = "connection lost after the message was sent; it may have been delivered: {error}"
TIMED_OUT_AFTER_SEND = "no answer after the message was sent; it may have been delivered"
GAVE_UP = "{detail} (after {attempts} attempts)"
SMTP_REPLY = "{code} {text}"
HTTP_REPLY = "HTTP {code}: {text}"
RETRY_AFTER_TOO_LONG = "HTTP 429: the gateway asks to wait {seconds:.0f} s"
OUTBOX_EMAIL = "outbox files in {path}"
OUTBOX_SMS = "outbox file {path}"
SMTP_SERVER = "SMTP {host}:{port} ({security})"
SMS_GATEWAY = "SMS gateway {url}"

# A DKIM key file that cannot sign (start-up refuses it; the file is never quoted).
DKIM_UNREADABLE = "cannot read {path}: {error}"
DKIM_NOT_PEM = "{path} is not a PEM private key without a passphrase"
DKIM_NOT_RSA = "{path} is not an RSA key (DKIM's rsa-sha256 needs one)"
DKIM_TOO_SHORT = "{path} holds a {bits}-bit RSA key; at least {minimum} bits are needed"
