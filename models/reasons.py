"""Why a delivery was skipped or failed: the words stored in `deliveries.reason`.

The engine records them and stats group by them, so both import them from here.
Failures reported by a channel carry the channel's own words instead. Stored in
English; a door shows them with `_()`, which finds these in the catalogues and leaves a
channel's own words as they are.
"""

from __future__ import annotations

from i18n import N_

NO_EMAIL = N_("no email")
INVALID_EMAIL = N_("invalid email")
EMAIL_UNSUBSCRIBED = N_("unsubscribed from email")
EMAIL_BOUNCED = N_("email bounced")
NO_PHONE = N_("no phone")
INVALID_PHONE = N_("invalid phone")
SMS_UNSUBSCRIBED = N_("unsubscribed from SMS")
TERMS_FALSE = N_("terms not met")
RENDER_FAILED = N_("template failed")
OUTCOME_LOST = N_("outcome lost")
STEP_STOPPED = N_("step stopped")
# The customer had as many messages of the channel in the period as FREQUENCY_CAP_*
# allows, over all chains (models/frequency_caps.py): in reach, so part of coverage.
FREQUENCY_CAP = N_("frequency cap")

# Skipped for these, a customer was never one the step could reach: stats leave
# them out of coverage (SPEC §7: the audience less missing or invalid contacts
# and unsubscribed; a customer whose terms were false is not in the audience).
OUT_OF_REACH = frozenset(
    {
        NO_EMAIL,
        INVALID_EMAIL,
        EMAIL_UNSUBSCRIBED,
        EMAIL_BOUNCED,
        NO_PHONE,
        INVALID_PHONE,
        SMS_UNSUBSCRIBED,
        TERMS_FALSE,
    }
)
