"""Everything the bot says, in one place, in the language of whoever it speaks with.

Messages are written in English and translated by the catalogues (i18n, docs/i18n.md):
a function's text goes through `_` / `ngettext` as it is built, a constant is marked
with `N_` here and translated with `_()` where it is shown. Placeholders are named
(`{name}`), so a translation may put them in its own order; numbers, percents and
dates are written as the language writes them (`i18n.number`, `percent`, `short_day`).

Messages are sent with HTML parse mode: anything that comes from users or the
database (names, reasons, file lines) goes through `esc`. Every message stays
within Telegram's 4096 characters, in every language: lists are cut or split into
pages here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from telegram.constants import MessageLimit

from i18n import N_, _, money, month_name, ngettext, number, percent, short_day
from models import reasons
from models.amounts import MAX_AMOUNT, AmountProblem
from models.chainfile import (
    DEFAULT_MECHANICS,
    MAX_HOLDOUT,
    NAME_LIMIT,
    OPENED_AFTER_SMS_CODE,
    SEND_NOW_LATER_CODE,
    SMS_BEFORE_OPENED_CODE,
    Action,
    Audience,
    BlockKind,
    Conversion,
    EmailAction,
    Match,
    Mechanic,
    PreviousStepAudience,
    Problem,
    Schedule,
    SegmentsAudience,
    Send,
    Term,
    TermsAudience,
    format_duration,
    format_moment,
    later_only_terms,
    mechanics_of,
)
from models.chains import ChainSummary, ChainView, StepView
from models.customers import ImportReport
from models.frequency_caps import FrequencyCap
from models.holds import Hold, HoldKind
from models.lift import MIN_CONVERTED, MIN_GROUP_CUSTOMERS, Group
from models.segments import SegmentInfo
from models.sms_parts import BARE_SMS, SampleCount, SmsCount, SmsFrame, sms_as_sent, sms_parts
from models.stats import (
    ChainStats,
    DailyStats,
    HoldoutStats,
    MessageNumbers,
    StepStats,
    VersionStats,
)
from models.tables import ChainStatus, Enrollment, Role
from services.editing import Placeholders
from services.forecast import Forecast, WaveProgress

LIMIT = MessageLimit.MAX_TEXT_LENGTH
# What a list may take of a message, leaving room for its title and closing lines.
PAGE_BUDGET = LIMIT - 400
NAME_SHOWN = 48


def esc(value: object) -> str:
    return escape(str(value), quote=False)


def short(name: str, limit: int = NAME_SHOWN) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def steps_count(count: int) -> str:
    return ngettext("{count} step", "{count} steps", count).format(count=count)


def days_count(count: int) -> str:
    return ngettext("{count} day", "{count} days", count).format(count=count)


def orders_count(count: int) -> str:
    return ngettext("{count} order", "{count} orders", count).format(count=count)


def period_words(period: timedelta) -> str:
    """`1 day`, `12 hours`, `90 minutes`: a period in its largest whole unit, as said
    after "in" (Russian "за": its minutes and seconds are in the accusative)."""
    seconds = int(period.total_seconds())
    if seconds % 86400 == 0:
        return days_count(seconds // 86400)
    if seconds % 3600 == 0:
        count = seconds // 3600
        return ngettext("{count} hour", "{count} hours", count).format(count=count)
    if seconds % 60 == 0:
        count = seconds // 60
        return ngettext("{count} minute", "{count} minutes", count).format(count=count)
    return ngettext("{count} second", "{count} seconds", seconds).format(count=seconds)


def skip_reason(reason: str | None) -> str:
    """A stored skip reason as shown: in the reader's language where the catalogue has it
    (models/reasons.py marks them), else as stored."""
    return _(reason) if reason else _("other")


def fit(lines: Sequence[str], budget: int = PAGE_BUDGET, total: int | None = None) -> list[str]:
    """As many lines as fit in the budget, then how many of `total` (default: all) are left out."""
    total = len(lines) if total is None else total
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    if len(kept) < total:
        kept.append(_("… and {count} more").format(count=total - len(kept)))
    return kept


# --- Access and failures ---------------------------------------------------------------

NOT_AUTHORISED = N_("Sorry, this bot is private and you are not authorised to use it.")
NEEDS_ADMIN = N_("Only admins can change things; you can still look at /chains and /stats.")
NEEDS_OWNER = N_("Only an owner can manage admins.")
PRIVATE_ONLY = N_("Please send this to me in a private chat.")
GROUP_ONLY = N_("This works in a group chat: add me to your team's group and send it there.")
FAILED = N_("Sorry, something went wrong on my side; please try again in a minute.")
STALE_BUTTON = N_("That button is out of date.")


def refused(reason: str) -> str:
    """A service's refusal (its own words, e.g. "chain 3 is draft; …") shown to the user."""
    return f"⚠️ {esc(reason[:1].upper() + reason[1:])}"


# --- Menu and help -----------------------------------------------------------------

MENU = N_("<b>Chainmail</b>\nWhat would you like to look at?")
BUTTON_CHAINS = N_("📋 Chains")
BUTTON_CUSTOMERS = N_("👥 Customers")
BUTTON_SEGMENTS = N_("🎯 Segments")
BUTTON_REPORTS = N_("📊 Reports")
BUTTON_HELP = N_("❓ Help")
BUTTON_MENU = N_("☰ Menu")
BUTTON_BACK = N_("◀ Back")
BUTTON_PREVIOUS = "◀"
BUTTON_NEXT = "▶"
BUTTON_PAUSE = N_("⏸ Pause")
BUTTON_RESUME = N_("▶️ Resume")
BUTTON_STATS = N_("📊 Stats")
BUTTON_OPEN_CHAIN = N_("📋 Open chain")
BUTTON_REFRESH = N_("🔄 Refresh")

# (command, description) for Telegram's command menu and /help; see `commands_for`.
VIEWER_COMMANDS = (
    ("start", N_("Main menu")),
    ("chains", N_("Chains and their status")),
    ("stats", N_("Numbers of a chain: /stats [chain]")),
    ("subscribe", N_("Daily summary here: /subscribe [Area/City]")),
    ("unsubscribe", N_("No more daily summaries here")),
    ("language", N_("Language: English or Russian")),
    ("help", N_("What I can do")),
)
ADMIN_COMMANDS = (
    ("new", N_("Build a new chain: /new [name]")),
    ("pause", N_("Pause a chain: /pause <chain>")),
    ("resume", N_("Resume a chain: /resume <chain>")),
    ("pause_all", N_("Pause every active chain")),
    ("import", N_("Import customers from a CSV file")),
    ("cancel", N_("Stop what we are doing")),
)
OWNER_COMMANDS = (("admins", N_("Who may use the bot")),)
GROUP_COMMANDS = (
    ("start", N_("Main menu")),
    ("stats", N_("Numbers of a chain: /stats [chain]")),
    ("chains", N_("Chains and their status")),
    ("subscribe", N_("Daily summaries in this chat")),
    ("unsubscribe", N_("No more daily summaries here")),
    ("language", N_("Language: English or Russian")),
    ("help", N_("What I can do")),
)
# In a group, what of GROUP_COMMANDS only admins may do (its members are viewers there),
# and what of ADMIN_COMMANDS works there too (the rest is for a private chat).
GROUP_ADMINS_ONLY = frozenset({"subscribe", "unsubscribe"})
ADMIN_COMMANDS_IN_GROUPS = frozenset({"pause", "resume", "pause_all"})


def commands_for(role: Role, *, group: bool = False) -> tuple[tuple[str, str], ...]:
    """The commands `role` may use, in a private chat or (`group`) in a group chat;
    descriptions untranslated: `_()` where shown."""
    if group and role is Role.VIEWER:
        return tuple(pair for pair in GROUP_COMMANDS if pair[0] not in GROUP_ADMINS_ONLY)
    if group:
        changes = tuple(pair for pair in ADMIN_COMMANDS if pair[0] in ADMIN_COMMANDS_IN_GROUPS)
        return GROUP_COMMANDS + changes
    if role is Role.VIEWER:
        return VIEWER_COMMANDS
    if role is Role.ADMIN:
        return VIEWER_COMMANDS + ADMIN_COMMANDS
    return VIEWER_COMMANDS + ADMIN_COMMANDS + OWNER_COMMANDS


def help_text(role: Role, *, group: bool = False) -> str:
    """Every command `role` may use where it asks (`group`: in a group chat), and none
    other: a viewer is never pointed at what only admins may do."""
    lines = [_("<b>What I can do</b>"), ""]
    lines += [
        f"/{command} — {esc(_(description))}"
        for command, description in commands_for(role, group=group)
    ]
    lines.append("")
    if role is not Role.VIEWER and not group:
        lines.append(
            _(
                "In a team group, /subscribe (admins) brings daily summaries there,\n"
                "and then anyone in the group may ask /stats."
            )
        )
    lines.append(_("A chain is named by its id or by (part of) its name."))
    if role is Role.VIEWER:
        lines.append(_("You can look at everything; changes are for admins."))
    return "\n".join(lines)


CANCELLED = N_("OK, cancelled.")
NOTHING_TO_CANCEL = N_("There is nothing to cancel.")
UNKNOWN_MESSAGE = N_("I did not get that. /start shows the menu, /help what I can do.")

# --- Language (/language) -------------------------------------------------------------

# Each language in its own words: someone who cannot read this one still finds theirs.
LANGUAGE_NAMES = {"ru": "🇷🇺 Русский", "en": "🇬🇧 English"}
BUTTON_TELEGRAM_LANGUAGE = N_("📱 As my Telegram")


def language_question(chosen: str | None, spoken: str) -> str:
    now = LANGUAGE_NAMES[spoken].split(" ", 1)[1]
    if chosen is None:
        how = _("Now: {language}, as your Telegram app is set.").format(language=now)
    else:
        how = _("Now: {language}, as you chose.").format(language=now)
    return "\n".join([_("🌐 <b>Which language should I speak with you?</b>"), how])


def language_chosen(chosen: str | None) -> str:
    """Said in the new language."""
    if chosen is None:
        said = _("✅ I will speak the language of your Telegram app.")
    else:
        said = _("✅ I will speak English with you.")
    return "\n".join(
        [said, _("Daily summaries of the chats you subscribed come in this language too.")]
    )


# --- Chains ------------------------------------------------------------------------

STATUS = {
    ChainStatus.DRAFT: N_("📝 draft"),
    ChainStatus.ACTIVE: N_("▶️ active"),
    ChainStatus.PAUSED: N_("⏸ paused"),
    ChainStatus.FINISHED: N_("✅ finished"),
    ChainStatus.ARCHIVED: N_("🗄 archived"),
}
NO_CHAINS = N_(
    "There are no chains yet. An operator can import one with "
    "<code>chainmail chains import FILE</code>."
)
# For an admin in their private chat, where /new works.
NO_CHAINS_BUILD_ONE = N_(
    "There are no chains yet: /new builds one. An operator can also import one with "
    "<code>chainmail chains import FILE</code>."
)


def status(chain_status: ChainStatus | str) -> str:
    return _(STATUS[ChainStatus(chain_status)])


def page_note(page: int, pages: int) -> str:
    if pages <= 1:
        return ""
    return _(" · page {page}/{pages}").format(page=page + 1, pages=pages)


def chain_list(chains: Sequence[ChainSummary], page: int, pages: int) -> str:
    lines = [_("📋 <b>Chains</b>") + page_note(page, pages), ""]
    lines += [
        f"<b>#{c.id}</b> {esc(short(c.name))} — {status(c.status)}, {steps_count(c.steps)}"
        + (f"\n   ⚠ {esc(short(c.hold_reason, 200))}" if c.hold_reason else "")
        for c in chains
    ]
    return "\n".join(lines)


def chain_button(chain: ChainSummary) -> str:
    # The status's emoji only: the same in every language.
    return f"{STATUS[chain.status].split()[0]} {short(chain.name, 40)}"


def _audience(audience: Audience | None, position: int) -> str:
    if audience is None:
        return _("audience not set")
    if isinstance(audience, SegmentsAudience):
        return _("to {segments}").format(segments=", ".join(audience.segments))
    if isinstance(audience, PreviousStepAudience):
        return _("all from step {position}").format(position=position - 1)
    return terms_short(audience)


def _terms_joined(terms: Iterable[str], match: str) -> str:
    joiner = _(" and ") if match == Match.ALL.value else _(" or ")
    return joiner.join(terms)


def terms_short(audience: TermsAudience) -> str:
    """`if not opened or not clicked`: a step's terms in a few words."""
    terms = _terms_joined((_(TERM_LABELS[term]) for term in audience.terms), audience.match.value)
    return _("if {terms}").format(terms=terms)


def _channel_name(channel: str | None) -> str:
    if channel == "email":
        return _("email")
    if channel == "sms":
        return _("SMS")
    return _("message not set")


def _step_line(step: StepView) -> str:
    if step.action is None:
        channel = _channel_name(None)
    else:
        channel = _channel_name("email" if isinstance(step.action, EmailAction) else "sms")
    audience = esc(short(_audience(step.audience, step.position), 60))
    return f"{step.position}. {esc(short(step.name, 40))} — {channel}, {audience}"


def chain_card(chain: ChainView) -> str:
    lines = [
        f"<b>{esc(short(chain.name, 100))}</b> (#{chain.id})",
        f"{status(chain.status)} · {steps_count(len(chain.steps))}",
        "",
    ]
    if chain.holdout_percent:
        lines[2:2] = [holdout_note(chain)]
    if chain.hold_reason:
        lines[2:2] = [
            _("⚠ Held by the engine: {reason}").format(reason=esc(short(chain.hold_reason, 300)))
        ]
    return "\n".join(lines + fit([_step_line(step) for step in chain.steps]))


def chain_held(hold: Hold) -> str:
    """The notice to owners and admins of a chain the system paused."""
    name = esc(short(hold.chain_name, 100))
    reason = esc(short(hold.reason, 400))
    if hold.kind is HoldKind.DELIVERABILITY:
        return _(
            "⚠ <b>{name}</b> (#{id}) is paused to protect your sender reputation: too many of"
            " its messages bounce or are reported as spam.\n{reason}\n\nNothing more of it is"
            " sent. Check whom the step goes to (an old or bought list?) and what it says; the"
            " bounced addresses and those who complained are not mailed again. Then /resume"
            " {id}: while the step stays over the limit, its next bounce or complaint pauses"
            " it again."
        ).format(name=name, id=hold.chain_id, reason=reason)
    return _(
        "⚠ <b>{name}</b> (#{id}) is paused: the engine could not go on with it.\n{reason}\n\n"
        "Fix the step, then /resume {id}."
    ).format(name=name, id=hold.chain_id, reason=reason)


PAUSED_TOAST = N_("Paused")
RESUMED_TOAST = N_("Resumed")


def paused(name: str) -> str:
    return _("⏸ <b>{name}</b> is paused: nothing of it is sent until you resume it.").format(
        name=esc(short(name))
    )


def resumed(name: str) -> str:
    return _("▶️ <b>{name}</b> is running again; what waited goes out now.").format(
        name=esc(short(name))
    )


def paused_all(names: Sequence[str]) -> str:
    if not names:
        return _("No chain was running; nothing to pause.")
    shown = ", ".join(esc(short(name, 30)) for name in names[:20])
    if len(names) > 20:
        shown = _("{names} and {count} more").format(names=shown, count=len(names) - 20)
    return ngettext(
        "⏸ Paused {count} chain: {names}.", "⏸ Paused {count} chains: {names}.", len(names)
    ).format(count=len(names), names=shown)


def which_chain(query: str, found_several: bool) -> str:
    if not query:
        return _("Which chain?")
    if found_several:
        return _("Several chains match «{query}». Which one?").format(query=esc(short(query)))
    return _("No chain matches «{query}». Pick one:").format(query=esc(short(query)))


NOTHING_TO_PAUSE = N_("No chain is running, so there is nothing to pause.")
NOTHING_TO_RESUME = N_("No chain is paused, so there is nothing to resume.")


# --- Stats -------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    return percent(part / whole, 0) if whole else "–"


def _small_percent(part: int, whole: int) -> str:
    """Bounce and complaint rates, whose limits are fractions of a percent."""
    if not whole:
        return "–"
    return percent(part / whole, 2 if part < whole / 100 else 1)


def _deliverability(numbers: MessageNumbers) -> list[str]:
    """Bounces and spam complaints, of what was handed to the channel (models/protection.py);
    nothing when there are none."""
    lines = []
    if numbers.bounced:
        lines.append(
            _("bounced {count} ({percent})").format(
                count=numbers.bounced,
                percent=_small_percent(numbers.bounced, numbers.handed),
            )
        )
    if numbers.complained:
        lines.append(
            _("spam {count} ({percent})").format(
                count=numbers.complained,
                percent=_small_percent(numbers.complained, numbers.handed),
            )
        )
    return lines


# The latest versions of a step shown under it; older ones are only counted.
VERSIONS_SHOWN = 5


def _version_line(version: VersionStats, channel: str | None) -> str:
    if channel == "email":
        reach = _("{count} opened ({percent})").format(
            count=version.opened, percent=_percent(version.opened, version.sent)
        )
    else:
        reach = _("{count} delivered ({percent})").format(
            count=version.delivered, percent=_percent(version.delivered, version.sent)
        )
    return _("v{version}: {sent} sent · {reach} · {orders} · conv. {conversion}").format(
        version=version.version,
        sent=version.sent,
        reach=reach,
        orders=orders_count(version.orders),
        conversion=percent(version.conversion_rate),
    )


def _version_lines(step: StepStats) -> list[str]:
    """A line per version, only for a step edited while it ran (several versions)."""
    if len(step.versions) < 2:
        return []
    shown = step.versions[-VERSIONS_SHOWN:]
    lines = [_version_line(version, step.channel) for version in shown]
    earlier = len(step.versions) - len(shown)
    if earlier:
        lines.insert(
            0,
            ngettext("… {count} earlier version", "… {count} earlier versions", earlier).format(
                count=earlier
            ),
        )
    return lines


def _terms_words(terms: Sequence[str], match: str) -> str:
    """`unsubscribed email`; `any of: not opened, not clicked`."""
    known = Term._value2member_map_
    labels = ", ".join(_(TERM_LABELS[Term(term)]) for term in terms if term in known)
    if len(terms) < 2:
        return labels
    return (_("all of: {terms}") if match == "all" else _("any of: {terms}")).format(terms=labels)


def _waiting_for_terms(step: StepStats) -> str:
    """Planned messages parked until their terms come true: most may never go."""
    return ngettext(
        "⏳ {count} message waits for its terms ({terms}): sent only if they come true in time",
        "⏳ {count} messages wait for their terms ({terms}): sent only if they come true in time",
        step.waiting_for_terms,
    ).format(count=step.waiting_for_terms, terms=_terms_words(step.terms, step.terms_match))


def _capped(step: StepStats) -> list[str]:
    """The messages the frequency cap held back, on a line of their own: another chain's
    doing, which the step's own numbers do not explain."""
    count = step.skipped_by_reason.get(reasons.FREQUENCY_CAP, 0)
    if not count:
        return []
    return [
        ngettext(
            "🚦 {count} message skipped by the frequency cap",
            "🚦 {count} messages skipped by the frequency cap",
            count,
        ).format(count=count)
    ]


def _step_stats(step: StepStats, currency: str) -> str:
    """Four short lines a phone shows without scrolling sideways, then one per version
    if the step has several; zeros of trouble left out. Amounts in `currency`."""
    if step.coverage:
        progress = [_("sent {sent}/{coverage}").format(sent=step.sent, coverage=step.coverage)]
    else:
        progress = [_("nothing sent yet")]
    for count, label in (
        (step.to_go, N_("to go {count}")),
        (step.failed, N_("failed {count}")),
        (step.skipped, N_("skipped {count}")),
        (step.uncertain, N_("uncertain {count}")),
    ):
        if count:
            progress.append(_(label).format(count=count))
    clicked = _("clicked {count} ({percent})").format(
        count=step.clicked, percent=_percent(step.clicked, step.sent)
    )
    if step.channel == "email":
        reached = _("opened {count} ({percent})").format(
            count=step.opened, percent=_percent(step.opened, step.sent)
        )
    else:
        # An SMS tells whether it was delivered and whether its short links were followed.
        reached = _("delivered {count} ({percent})").format(
            count=step.delivered, percent=_percent(step.delivered, step.sent)
        )
    reach = f"{reached} · {clicked}"
    if step.unsubscribed:
        reach += " · " + _("unsub {count}").format(count=step.unsubscribed)
    trouble = _deliverability(step)
    return "\n".join(
        [
            f"<b>{step.position}. {esc(short(step.name, 40))}</b> · {_channel_name(step.channel)}",
            " · ".join(progress),
            *([_waiting_for_terms(step)] if step.waiting_for_terms else []),
            *_capped(step),
            reach,
            *(["⚠ " + " · ".join(trouble)] if trouble else []),
            "🛒 "
            + _("{orders} · {revenue} · conv. {conversion}").format(
                orders=orders_count(step.orders),
                revenue=money(step.revenue, currency),
                conversion=percent(step.conversion_rate),
            ),
            *_version_lines(step),
        ]
    )


def _pages(blocks: Iterable[str], budget: int) -> list[list[str]]:
    pages: list[list[str]] = [[]]
    size = 0
    for block in blocks:
        if pages[-1] and size + len(block) + 2 > budget:
            pages.append([])
            size = 0
        pages[-1].append(block)
        size += len(block) + 2
    return pages


NO_STEPS_YET = N_("The chain has no steps yet.")


def stats_pages(stats: ChainStats, *, currency: str) -> list[str]:
    """A chain's numbers, one block per step, in as few messages as fit Telegram's limit;
    amounts in the shop's `currency` (SHOP_CURRENCY)."""
    header = f"📊 <b>{esc(short(stats.name, 60))}</b> · {status(stats.status)}"
    if not stats.steps:
        return [f"{header}\n\n{_(NO_STEPS_YET)}"]
    # Room for the header and its page number (" · page 10/10", " · стр. 10/10").
    budget = LIMIT - len(header) - 30
    blocks = [_step_stats(step, currency) for step in stats.steps]
    if stats.holdout is not None:
        blocks.insert(0, "\n".join(holdout_lines(stats.holdout, currency)))
    pages = _pages(blocks, budget)
    return [
        f"{header}{page_note(index, len(pages))}\n\n" + "\n\n".join(blocks)
        for index, blocks in enumerate(pages)
    ]


REPORTS = N_("📊 <b>Reports</b>\nWhich chain's numbers?")


# --- Customers and segments --------------------------------------------------------


def customers(count: int, *, may_import: bool) -> str:
    """`may_import`: the reader is an admin, who may /import; a viewer cannot."""
    if not may_import:
        return _(
            "👥 <b>Customers</b>: {count}\n\nAdmins add and update customers from CSV files."
        ).format(count=count)
    return _(
        "👥 <b>Customers</b>: {count}\n\n"
        "To add or update customers, send /import and then a CSV file with the columns "
        "<code>external_id,email,phone,first_name,last_name,timezone,tags</code> "
        "(tags separated by <code>;</code>; other columns become attributes)."
    ).format(count=count)


NO_SEGMENTS = N_(
    "There are no segments yet. An admin makes one here with ➕ New segment, or an operator "
    "with <code>chainmail segments add NAME --tags a,b</code>."
)


def segment_list(segments: Sequence[SegmentInfo], page: int, pages: int) -> str:
    lines = [_("🎯 <b>Segments</b>") + page_note(page, pages), ""]
    for segment in segments:
        if segment.tags:
            tags = esc(short(", ".join(segment.tags), 80))
            if segment.match == "all":
                who = _("customers with all of: {tags}").format(tags=tags)
            else:
                who = _("customers with any of: {tags}").format(tags=tags)
        elif segment.attributes or segment.behaviour:
            who = _("customers who meet its conditions")
        else:
            who = _("all customers")
        more = len(segment.attributes) + len(segment.behaviour)
        if segment.tags and more:
            who = ngettext(
                "{who} (and {count} condition)", "{who} (and {count} conditions)", more
            ).format(who=who, count=number(more))
        lines.append(f"<b>{esc(short(segment.name, 40))}</b> — {who}")
    lines += ["", _("Tap a segment to see how many customers it finds.")]
    return "\n".join(lines)


# --- The segment editor (handlers/segment_editor.py) ---------------------------------

BUTTON_NEW_SEGMENT = N_("➕ New segment")
BUTTON_EDIT_SEGMENT = N_("✏️ Edit")
BUTTON_DELETE_SEGMENT = N_("🗑 Delete")
BUTTON_SEGMENT_TAGS = N_("🏷 Tags")
BUTTON_ADD_ATTRIBUTE = N_("➕ Attribute")
BUTTON_ADD_BEHAVIOUR = N_("➕ Behaviour")
BUTTON_MATCH_ANY = N_("Any of the tags")
BUTTON_MATCH_ALL = N_("All of the tags")
BUTTON_TYPE_TAG = N_("✍️ Type a tag")
BUTTON_TYPE_KEY = N_("✍️ Type a name")
BUTTON_TYPE_DAYS = N_("✍️ Other number")
BUTTON_DONE = N_("✔ Done")
SEGMENT_OPERATOR_BUTTONS = {
    "equals": N_("= equals"),
    "contains": N_("∋ contains"),
    "greater": N_("> greater than"),
    "less": N_("< less than"),
}
SEGMENT_BEHAVIOUR_BUTTONS = {
    "ordered": N_("🛒 Ordered in the last N days"),
    "never_ordered": N_("🚫 Never ordered"),
    "opened_or_clicked": N_("📬 Opened or clicked an email in the last N days"),
}
SEGMENT_DAYS_CHOICES = (7, 30, 90, 180, 365)

ASK_SEGMENT_NAME = N_(
    "➕ <b>New segment</b>\nWhat is it called? Send the name: letters, digits, - and _ "
    "(or /cancel)."
)
PICK_SEGMENT_TAGS = N_("Tap tags to choose them, or type one. Tags customers have:")
NO_TAGS_TO_PICK = N_("No customer has tags yet; type a tag.")
ASK_SEGMENT_TAG = N_("Send the tag (or /cancel).")
PICK_ATTRIBUTE_KEY = N_("Which attribute? These are the ones customers have:")
NO_ATTRIBUTE_KEYS = N_("No customer has attributes yet; type the attribute's name.")
ASK_ATTRIBUTE_KEY = N_("Send the attribute's name, as in the CSV column (or /cancel).")
PICK_BEHAVIOUR = N_("Which behaviour should the customers have?")
ASK_SEGMENT_DAYS = N_("Over how many days? Tap a number or send one from 1 to 3650.")
SEGMENT_SAVED_TOAST = N_("Segment saved")
SEGMENT_DELETED_TOAST = N_("Segment deleted")
SEGMENT_EDITOR_CLOSED = N_("Segment editor closed. /start shows the menu.")


def pick_operator(key: str) -> str:
    return _("How should <b>{key}</b> compare?").format(key=esc(short(key, 40)))


def ask_attribute_value(key: str, operator: str) -> str:
    questions = {
        "equals": N_("Send the value that <b>{key}</b> should equal (or /cancel)."),
        "contains": N_("Send the text that <b>{key}</b> should contain (or /cancel)."),
        "greater": N_("Send the number that <b>{key}</b> should be greater than (or /cancel)."),
        "less": N_("Send the number that <b>{key}</b> should be less than (or /cancel)."),
    }
    return _(questions[operator]).format(key=esc(short(key, 40)))


def attribute_condition(key: str, operator: str, value: str) -> str:
    sentences = {
        "equals": N_("{key} equals «{value}»"),
        "contains": N_("{key} contains «{value}»"),
        "greater": N_("{key} is greater than {value}"),
        "less": N_("{key} is less than {value}"),
    }
    return _(sentences[operator]).format(key=esc(short(key, 40)), value=esc(short(value, 60)))


def behaviour_condition(behaviour: str, days: int | None) -> str:
    if behaviour == "never_ordered":
        return _("Never ordered")
    count = days or 0
    if behaviour == "ordered":
        sentence = ngettext(
            "Ordered in the last {count} day", "Ordered in the last {count} days", count
        )
    else:
        sentence = ngettext(
            "Opened or clicked an email in the last {count} day",
            "Opened or clicked an email in the last {count} days",
            count,
        )
    return sentence.format(count=number(count))


def segment_tags_line(tags: Sequence[str], match: str) -> str:
    shown = esc(short(", ".join(tags), 200))
    if match == "all":
        return _("🏷 Customers with all of these tags: {tags}").format(tags=shown)
    return _("🏷 Customers with any of these tags: {tags}").format(tags=shown)


def segment_conditions(draft: dict[str, Any]) -> list[str]:
    """The definition, one whole sentence a line: tags, attributes, behaviour."""
    lines: list[str] = []
    if draft.get("tags"):
        lines.append(segment_tags_line(draft["tags"], draft.get("match", "any")))
    for n, item in enumerate(draft.get("attributes") or [], 1):
        lines.append(f"{n}. " + attribute_condition(item["key"], item["operator"], item["value"]))
    count = len(draft.get("attributes") or [])
    for n, item in enumerate(draft.get("behaviour") or [], count + 1):
        lines.append(f"{n}. " + behaviour_condition(item["behaviour"], item.get("days")))
    if not lines:
        lines.append(_("No conditions yet: every customer."))
    elif len(lines) > 1:
        lines.append(_("Every condition must hold."))
    return lines


def live_count(count: int) -> str:
    return ngettext(
        "👥 {count} customer matches now.", "👥 {count} customers match now.", count
    ).format(count=number(count))


def segment_card(name: str, draft: dict[str, Any], count: int, used_by: Sequence[str]) -> str:
    lines = [f"🎯 <b>{esc(short(name, 60))}</b>", "", *segment_conditions(draft), ""]
    lines.append(live_count(count))
    if used_by:
        lines.append(_("Used by {chains}.").format(chains=esc(short(", ".join(used_by), 300))))
    return "\n".join(lines)


def segment_draft(
    name: str,
    new: bool,
    draft: dict[str, Any],
    count: int,
    *,
    unsaved: bool,
    problems: Sequence[str] = (),
    question: str | None = None,
) -> str:
    shown = esc(short(name, 60))
    if new:
        title = _("🎯 New segment <b>{name}</b>").format(name=shown)
    else:
        title = _("🎯 Editing segment <b>{name}</b>").format(name=shown)
    lines = [title, "", *segment_conditions(draft), ""]
    lines.append(live_count(count))
    if unsaved:
        lines.append(_("✏️ Not saved yet: 💾 Save keeps it, 🗑 Discard forgets it."))
    lines += [f"⚠️ {esc(problem)}" for problem in problems]
    if question:
        lines += ["", question]
    return "\n".join(lines)


def segment_leave_question(name: str) -> str:
    return _(
        "The segment {name} has unsaved changes.\nSave them, discard them, or keep editing?"
    ).format(name=esc(short(name, 60)))


def segment_delete_question(name: str) -> str:
    return _("Delete the segment {name}? Chains can no longer use it after that.").format(
        name=esc(short(name, 60))
    )


def segment_name_taken(name: str) -> str:
    return _("There is already a segment {name}. Send another name.").format(
        name=esc(short(name, 60))
    )


def not_a_segment_name(name: str) -> str:
    return _(
        "«{name}» cannot be a segment's name: use letters, digits, - and _ "
        "(at most 100). Send another one."
    ).format(name=esc(short(name, 60)))


# --- Import ------------------------------------------------------------------------

SEND_CSV = N_(
    "Send me the CSV file now (as a file). Columns: "
    "<code>external_id,email,phone,first_name,last_name,timezone,tags</code>; "
    "UTF-8 or cp1251, <code>,</code> or <code>;</code> separated. /cancel to stop."
)
SEND_ANOTHER = N_("Send another file, or /cancel.")
STILL_WAITING_FOR_CSV = N_("I am waiting for a CSV file (send it as a file), or /cancel.")
NOT_A_CSV = N_("That does not look like a CSV file; please send a .csv file, or /cancel.")


def too_big(limit_mb: int) -> str:
    return _(
        "That file is over {limit} MB, more than Telegram lets me download. "
        "Split it, or import it on the server with <code>chainmail customers import</code>."
    ).format(limit=limit_mb)


def importing(name: str) -> str:
    return _("⏳ Importing {name}…").format(name=esc(short(name)))


def import_report(name: str, report: ImportReport) -> str:
    lines = [
        ngettext(
            "✅ {name}: imported {count} customer ({created} new, {updated} updated).",
            "✅ {name}: imported {count} customers ({created} new, {updated} updated).",
            report.imported,
        ).format(
            name=esc(short(name)),
            count=report.imported,
            created=report.created,
            updated=report.updated,
        )
    ]
    if report.refused:
        lines.append(
            ngettext("⚠️ {count} line refused:", "⚠️ {count} lines refused:", report.refused).format(
                count=report.refused
            )
        )
        # The service keeps the reasons of the first lines only; the count covers them all.
        errors = [esc(short(error.translated(), 200)) for error in report.errors]
        lines += fit(errors, total=report.refused)
    return "\n".join(lines)


# --- Group chats -------------------------------------------------------------------


def subscribed(timezone: str | None, default_timezone: str) -> str:
    if timezone:
        zone = esc(timezone)
    else:
        zone = _("{zone} (the default; /subscribe Area/City to change it)").format(
            zone=esc(default_timezone)
        )
    return _("📬 This chat now gets a daily summary of the chains. Time zone: {zone}.").format(
        zone=zone
    )


UNSUBSCRIBED = N_("This chat no longer gets daily summaries.")
NOT_SUBSCRIBED = N_("This chat was not getting daily summaries.")

# --- Reports: daily summaries and charts ----------------------------------------------

# --- Holdout and lift ------------------------------------------------------------------


def _signed(value: float | Decimal, decimals: int) -> str:
    """`+1.2`, `-0.3`: a change, with its sign, as the language writes numbers."""
    shown = number(value, decimals, grouping=False)
    return shown if shown.startswith(("-", "−")) else f"+{shown}"


def _signed_money(amount: Decimal, currency: str) -> str:
    shown = money(amount, currency)
    return shown if amount < 0 else f"+{shown}"


def points(fraction: float) -> str:
    """A difference of two rates, in percentage points: `+1.2 pp`."""
    return _("{points} pp").format(points=_signed(fraction * 100, 1))


def _holdout_group(template: str, group: Group, currency: str) -> str:
    return _(template).format(
        customers=group.customers,
        conversion=percent(group.conversion_rate),
        orders=orders_count(group.orders),
        revenue=money(group.revenue, currency),
    )


HOLDOUT_TREATED = N_("treated {customers}: conv. {conversion} · {orders} · {revenue}")
HOLDOUT_HELD_OUT = N_("held out {customers}: conv. {conversion} · {orders} · {revenue}")


def not_enough_data() -> str:
    return _(
        "📈 lift: not enough data yet (it takes {customers} customers in each group"
        " and {converted} who ordered)"
    ).format(customers=MIN_GROUP_CUSTOMERS, converted=MIN_CONVERTED)


def lift_line(holdout: HoldoutStats, currency: str) -> str:
    """The lift with its interval, or why it is not shown yet."""
    found = holdout.lift
    if found is None or not holdout.enough_data:
        return not_enough_data()
    low, high = found.ci95
    return _("📈 lift {delta} (95% CI {low} to {high}) · {orders} orders · {revenue}").format(
        delta=points(found.conversion_rate_delta),
        low=points(low),
        high=points(high),
        orders=_signed(found.incremental_orders, 1),
        revenue=_signed_money(found.incremental_revenue, currency),
    )


def holdout_lines(holdout: HoldoutStats, currency: str) -> list[str]:
    """The comparison of the treated and held-out customers (docs/attribution.md): in
    /stats and the daily summaries; amounts in `currency`."""
    window = days_count(holdout.window_days)
    if holdout.min_amount:
        head = _("🧪 <b>Holdout {percent}</b> · orders of {amount} or more within {window}")
    else:
        head = _("🧪 <b>Holdout {percent}</b> · every order within {window}")
    return [
        head.format(
            percent=percent(holdout.percent / 100, 0),
            amount=money(holdout.min_amount, currency),
            window=window,
        ),
        _holdout_group(HOLDOUT_TREATED, holdout.treated, currency),
        _holdout_group(HOLDOUT_HELD_OUT, holdout.held_out, currency),
        lift_line(holdout, currency),
    ]


BUTTON_CHART = N_("📈 Chart")
NOTHING_TO_DRAW = N_("Nothing to draw yet: no message of this chain was sent and no order counted.")


def chart_caption(name: str) -> str:
    return _("📈 <b>{name}</b>: funnel per step, orders per day").format(name=esc(short(name, 60)))


def _change(now: int, before: int) -> str:
    if now == before:
        return ""
    return f" ({now - before:+d})"


# A daily summary's numbers: the count (and its change) goes in `{count}`.
SENT_COUNT = N_("sent {count}")
OPENED_COUNT = N_("opened {count}")
DELIVERED_COUNT = N_("delivered {count}")
CLICKED_COUNT = N_("clicked {count}")
BOUNCED_COUNT = N_("bounced {count}")
SPAM_COUNT = N_("spam {count}")


def _summary_step(day: StepStats, before: StepStats, total: StepStats, currency: str) -> str:
    """A step of a daily summary: the last 24 hours with the change against the 24 hours
    before, then totals; amounts in `currency`."""
    if total.channel == "email":
        reach = [("opened", OPENED_COUNT), ("clicked", CLICKED_COUNT)]
    else:
        reach = [("delivered", DELIVERED_COUNT), ("clicked", CLICKED_COUNT)]

    def changed(now: int, earlier: int) -> str:
        return f"{now}{_change(now, earlier)}"

    last_day = [_(SENT_COUNT).format(count=changed(day.sent, before.sent))]
    last_day += [
        _(label).format(count=changed(getattr(day, name), getattr(before, name)))
        for name, label in reach
    ]
    last_day += [
        _(label).format(count=changed(count, earlier))
        for count, earlier, label in (
            (day.bounced, before.bounced, BOUNCED_COUNT),
            (day.complained, before.complained, SPAM_COUNT),
        )
        if count
    ]
    last_day.append(f"🛒 {changed(day.orders, before.orders)} · {money(day.revenue, currency)}")
    overall = [_(SENT_COUNT).format(count=total.sent)]
    overall += [
        _(label).format(count=getattr(total, name))
        + f" ({_percent(getattr(total, name), total.sent)})"
        for name, label in reach
    ]
    overall.append(
        "🛒 "
        + _("{orders} · {revenue} · conv. {conversion}").format(
            orders=total.orders,
            revenue=money(total.revenue, currency),
            conversion=percent(total.conversion_rate),
        )
    )
    trouble = [
        _(label).format(count=count)
        for count, label in (
            (total.failed, N_("failed {count}")),
            (total.uncertain, N_("uncertain {count}")),
            (total.unsubscribed, N_("unsub {count}")),
        )
        if count
    ]
    trouble += _deliverability(total)
    if total.skipped:
        why = ", ".join(
            f"{esc(short(skip_reason(reason), 30))} {count}"
            for reason, count in list(total.skipped_by_reason.items())[:3]
        )
        more = ", …" if len(total.skipped_by_reason) > 3 else ""
        trouble.append(
            _("skipped {count} ({reasons})").format(count=total.skipped, reasons=why + more)
        )
    lines = [
        f"<b>{total.position}. {esc(short(total.name, 40))}</b> · {_channel_name(total.channel)}",
        _("last 24 h: {numbers}").format(numbers=" · ".join(last_day)),
        _("in total: {numbers}").format(numbers=" · ".join(overall)),
    ]
    if trouble:
        lines.append(" · ".join(trouble))
    return "\n".join(lines)


def summary_header(day: date, zone: str, start: datetime, end: datetime) -> str:
    """The summary of `day` covers [start, end) (models.summaries.summary_period), told
    in the chat's `zone`."""
    local = ZoneInfo(zone)
    return _(
        "📬 <b>Daily summary</b> · {day} ({zone})\n"
        "From {start} yesterday to {end} today, with the change against the 24 hours "
        "before; totals up to {end} today."
    ).format(
        day=short_day(day),
        zone=esc(zone),
        start=f"{start.astimezone(local):%H:%M}",
        end=f"{end.astimezone(local):%H:%M}",
    )


def summary_messages(numbers: DailyStats, header: str | None = None, *, currency: str) -> list[str]:
    """One chain's part of a daily summary, in as few messages as Telegram's limit allows;
    `header` goes first (the summary's first chain); amounts in `currency`."""
    total = numbers.total
    title = f"📊 <b>{esc(short(total.name, 60))}</b> · {status(total.status)}"
    if header:
        title = f"{header}\n\n{title}"
    if not total.steps:
        return [f"{title}\n\n{_(NO_STEPS_YET)}"]
    # By position: a step saved between the three counts shows from the next summary on.
    days = {step.position: step for step in numbers.day.steps}
    befores = {step.position: step for step in numbers.day_before.steps}
    blocks = [
        _summary_step(days[step.position], befores[step.position], step, currency)
        for step in total.steps
        if step.position in days and step.position in befores
    ]
    if total.holdout is not None:
        blocks.append("\n".join(holdout_lines(total.holdout, currency)))
    pages = _pages(blocks, LIMIT - len(title) - 30)
    return [
        f"{title}{page_note(index, len(pages))}\n\n" + "\n\n".join(page)
        for index, page in enumerate(pages)
    ]


# --- Admins ------------------------------------------------------------------------

ADMINS_USAGE = N_(
    "/admins — the list\n"
    "/admins add &lt;telegram id&gt; admin|viewer [name]\n"
    "/admins remove &lt;telegram id&gt;"
)
ROLE_NAMES = {
    Role.OWNER.value: N_("owner"),
    Role.ADMIN.value: N_("admin"),
    Role.VIEWER.value: N_("viewer"),
}


def admin_list(owner_ids: Sequence[int], people: Sequence[tuple[int, str, str | None]]) -> str:
    """Owners (from ADMIN_IDS) and the admins and viewers added in the bot."""
    lines = [f"<code>{owner}</code> — {_(ROLE_NAMES[Role.OWNER.value])}" for owner in owner_ids]
    for telegram_id, role, name in people:
        named = f" ({esc(short(name, 40))})" if name else ""
        lines.append(f"<code>{telegram_id}</code> — {_(ROLE_NAMES.get(role, role))}{named}")
    lines = [_("👤 <b>Who may use the bot</b>"), "", *fit(lines)]
    return "\n".join([*lines, "", _(ADMINS_USAGE)])


def admin_added(telegram_id: int, role: Role) -> str:
    if role is Role.ADMIN:
        return _("✅ <code>{id}</code> is now admin.").format(id=telegram_id)
    return _("✅ <code>{id}</code> is now viewer.").format(id=telegram_id)


def admin_removed(telegram_id: int) -> str:
    return _("✅ <code>{id}</code> may no longer use the bot.").format(id=telegram_id)


def admin_unknown(telegram_id: int) -> str:
    return _("<code>{id}</code> was neither an admin nor a viewer.").format(id=telegram_id)


OWNER_FROM_SETTINGS = N_("Owners are set with ADMIN_IDS on the server, not here.")


# --- The chain editor (handlers/chain_editor.py) ------------------------------------

BUTTON_NEW_CHAIN = N_("➕ New chain")
BUTTON_EDIT = N_("✏️ Edit")
BUTTON_COPY = N_("📄 Copy")
BUTTON_ADD_STEP = N_("➕ Add step")
BUTTON_ACTIVATE = N_("🚀 Activate")
BUTTON_CONFIRM_ACTIVATE = N_("✅ Activate now")
BUTTON_RENAME = N_("✏️ Rename")
BUTTON_RENAME_STEP = N_("✏️ Rename step")
BUTTON_CLOSE = N_("✖ Close")
BUTTON_MAP = N_("🗺 Map")
BUTTON_PREVIOUS_STEP = N_("◀ Step")
BUTTON_NEXT_STEP = N_("Step ▶")
BUTTON_SAVE = N_("💾 Save")
BUTTON_DISCARD = N_("🗑 Discard")
BUTTON_KEEP_EDITING = N_("✏️ Keep editing")
BUTTON_CONFIRM_SAVE = N_("✅ Save")
BUTTON_STOP_STEP = N_("⏹ Stop step")
BUTTON_REMOVE_STEP = N_("🗑 Remove step")
BUTTON_EMAIL = N_("✉️ Email")
BUTTON_SMS = N_("📱 SMS")
BUTTON_TYPE_SUBJECT = N_("✏️ Subject")
BUTTON_TYPE_TEXT = N_("✏️ Text")
BUTTON_TYPE_HTML = "✏️ HTML"
BUTTON_NO_HTML = N_("🗑 No HTML")
BUTTON_ONLY_IF = N_("Only if…")
BUTTON_OTHER_DAY = N_("◀ Other day")
BUTTON_OTHER_HOUR = N_("◀ Other hour")
BUTTON_OTHER_WINDOW = N_("✏️ Other window")
BUTTON_MIN_AMOUNT = N_("✏️ Minimum amount")
BUTTON_PREVIEW = N_("👁 Preview")
BUTTON_TEST_SEND = N_("🧪 Send test to me")
NO_DAY = "·"
# Typed moments: `tomorrow 10:00` (handlers/when.py), in either language whatever the
# bot speaks.
DAY_WORDS = {"today": 0, "tomorrow": 1, "сегодня": 0, "завтра": 1}

BLOCK_TITLES = {
    BlockKind.AUDIENCE: N_("👥 Who"),
    BlockKind.ACTION: N_("✉️ Message"),
    BlockKind.SCHEDULE: N_("⏰ When"),
    BlockKind.CONVERSION: N_("🎯 Goal"),
}
TERM_LABELS = {
    Term.OPENED: N_("opened"),
    Term.NOT_OPENED: N_("not opened"),
    Term.CLICKED: N_("clicked"),
    Term.NOT_CLICKED: N_("not clicked"),
    Term.DELIVERED: N_("delivered"),
    Term.NOT_DELIVERED: N_("not delivered"),
    Term.UNSUBSCRIBED_EMAIL: N_("unsubscribed email"),
    Term.UNSUBSCRIBED_SMS: N_("unsubscribed SMS"),
    Term.ORDERED: N_("ordered"),
    Term.NOT_ORDERED: N_("not ordered"),
}
SEND_LABELS = {"now": N_("Now"), "after": N_("After…"), "at": N_("At…")}
# What counts as a conversion (docs/attribution.md): the buttons of the goal block,
# what each means on its screen, and the short words of the step's summary.
MECHANIC_LABELS = {
    Mechanic.NEW_ORDER: N_("🆕 New order"),
    Mechanic.ORDER_INCREASE: N_("📈 Bigger order"),
    Mechanic.ORDER_RESTORED: N_("♻️ Restored order"),
}
MECHANIC_HINTS = {
    Mechanic.NEW_ORDER: N_("an order placed within the window: its amount counts"),
    Mechanic.ORDER_INCREASE: N_(
        "an order placed before the message grew within the window: the increase counts"
    ),
    Mechanic.ORDER_RESTORED: N_(
        "an order cancelled before the message was restored within the window: its amount counts"
    ),
}
MECHANIC_WORDS = {
    Mechanic.NEW_ORDER: N_("new"),
    Mechanic.ORDER_INCREASE: N_("bigger"),
    Mechanic.ORDER_RESTORED: N_("restored"),
}
ONE_MECHANIC_AT_LEAST = N_("At least one kind of order must count.")
# What the fields of a block are called on screen, for the problems Save lists.
FIELD_NAMES = {
    "segments": N_("segments"),
    "who": N_("who"),
    "terms": N_("terms"),
    "match": N_("match"),
    "channel": N_("channel"),
    "subject": N_("subject"),
    "text": N_("text"),
    "html": "HTML",
    "send": N_("when"),
    "after": N_("delay"),
    "at": N_("moment"),
    "wait_days": N_("wait"),
    "window_days": N_("window"),
    "min_amount": N_("minimum amount"),
    "mechanics": N_("what counts"),
    "goal": N_("goal"),
}

ASK_CHAIN_NAME = N_("➕ <b>New chain</b>\nWhat is it called? Send the name (or /cancel).")
ASK_NEW_NAME = N_("Send the new name (or /cancel).")
EDITOR_CLOSED = N_("Editor closed. /start shows the menu.")
DISCARDED_TOAST = N_("Changes discarded")
STEP_ADDED_TOAST = N_("Step added")
RENAMED_TOAST = N_("Renamed")
COPIED_TOAST = N_("Copied: this is the new chain")
ACTIVATED_TOAST = N_("Activated")
STOPPED_TOAST = N_("Step stopped")
REMOVED_TOAST = N_("Step removed")
STOPPED_MARK = "⏹"
STOPPED_STEP = N_("⏹ stopped: its blocks are shown as they were and can no longer change.")
# Under the SMS text in the composer: the line every SMS ends with, counted in its parts.
SMS_OPT_OUT_LINE = N_("➕ then «{line}» (SMS_OPT_OUT_TEXT), counted below")
PICK_A_DAY = N_("Pick a day first.")
NOT_HTML = N_("Please send the HTML as a .html file (up to 20 MB), or type it.")
HTML_NOT_UTF8 = N_("That file is not UTF-8 text; please save it as UTF-8 and send it again.")
NO_SUCH_DATE = N_("there is no such day")
YEAR_OUT_OF_RANGE = N_("the year must be between {first} and {last}")
NO_SUCH_TIME = N_("the time must be between 00:00 and 23:59")
NO_SEGMENTS_TO_PICK = N_(
    "There are no segments yet. Make one from the menu (🎯 Segments, ➕ New segment), "
    "or on the server: <code>chainmail segments add NAME --tags a,b</code>"
)


@dataclass(frozen=True)
class BlockScreen:
    """What a block's screen shows: the step, its draft and what the editor waits for."""

    chain: ChainView
    step: StepView
    kind: BlockKind
    draft: dict[str, Any]
    unsaved: bool
    waiting_for: str | None
    problems: list[Problem]
    note: str | None
    # The shop's currency (SHOP_CURRENCY), of the minimum amount.
    currency: str
    # The opt-out line and short links of every SMS, counted in its parts.
    sms_frame: SmsFrame = BARE_SMS
    # The shop's date (its examples of typed moments are tomorrow's).
    today: date | None = None
    # An SMS draft counted over sample customers (`services.preview.sms_sample_count`).
    sms_count: SampleCount | None = None
    # Placeholders no customer has, shown before Save goes on (Save anyway).
    placeholders: Placeholders | None = None

    @property
    def terms_audience(self) -> bool:
        return isinstance(self.step.audience, TermsAudience)

    @property
    def previous_channel(self) -> str | None:
        """The channel of the previous step's saved message, None if there is none."""
        for step in self.chain.steps:
            if step.position == self.step.position - 1 and step.action is not None:
                return "email" if isinstance(step.action, EmailAction) else "sms"
        return None


def checkbox(label: str, checked: bool) -> str:
    return f"{'☑' if checked else '☐'} {short(label, 40)}"


def everyone_from(position: int) -> str:
    return _("Everyone from step {position}").format(position=position)


def match_button(match: str) -> str:
    return _("Match: all of them") if match == "all" else _("Match: any of them")


def wait_button(days: int) -> str:
    return ngettext("⏳ Wait up to {count} day", "⏳ Wait up to {count} days", days).format(
        count=days
    )


def days_short(days: int) -> str:
    return _("{count}d").format(count=days)


def month_title(year: int, month: int) -> str:
    return f"{month_name(month)} {year}"


def back_to_step(position: int) -> str:
    return _("◀ Step {position}").format(position=position)


def default_step_name(position: int) -> str:
    if position == 1:
        return _("Main mailing")
    return _("Step {position}").format(position=position)


def block_title(kind: BlockKind | str) -> str:
    return _(BLOCK_TITLES[BlockKind(kind)])


def block_button(kind: str, saved: bool) -> str:
    return f"{block_title(kind)} {'✓' if saved else '…'}"


def enrollment_button(enrollment: Enrollment) -> str:
    if enrollment is Enrollment.ONCE:
        return _("Enrollment: once")
    return _("Enrollment: continuous")


def enrollment_toast(enrollment: Enrollment) -> str:
    if enrollment is Enrollment.ONCE:
        return _("The audience is taken once, at activation")
    return _("Customers who join the segments later enter too")


def holdout_button(holdout_percent: int) -> str:
    if not holdout_percent:
        return _("🧪 Holdout: none")
    return _("🧪 Holdout: {percent}").format(percent=percent(holdout_percent / 100, 0))


def holdout_note(chain: ChainView) -> str:
    """A chain's holdout in one line: its share, and whether it may still change."""
    share = percent(chain.holdout_percent / 100, 0)
    if chain.status is ChainStatus.DRAFT:
        return _("🧪 holdout {percent} of the main step").format(percent=share)
    return _("🧪 holdout {percent} of the main step, fixed since activation").format(percent=share)


HOLDOUT_CHOICES = (0, 5, 10, 20)
HOLDOUT_SAVED_TOAST = N_("Holdout saved")


def holdout_screen(chain: ChainView, draft: int, *, unsaved: bool, note: str | None) -> str:
    """The holdout's block: the draft share, what it does, how to change it."""
    mark = _(" ● unsaved") if unsaved else ""
    if draft:
        share = _("Held out: {percent} of the main step's audience.").format(
            percent=percent(draft / 100, 0)
        )
    else:
        share = _("Held out: nobody. Every customer of the main step gets it.")
    lines = [
        _("🧪 <b>Holdout</b> · {name}{unsaved}").format(
            name=esc(short(chain.name, 60)), unsaved=mark
        ),
        "",
        share,
        _(
            "Held-out customers get nothing from this chain; their orders are compared with"
            " everyone else's over the main step's window: the lift in /stats. Who is held"
            " out is drawn per customer once, and the share is fixed once the chain is"
            " activated."
        ),
    ]
    if note:
        lines += ["", f"⚠️ {note}"]
    lines += [
        "",
        _("Tap a share, or send a whole number from 0 to {max}.").format(max=MAX_HOLDOUT),
    ]
    return "\n".join(lines)


def not_a_holdout(text: str) -> str:
    return _("«{text}» is not a whole number of percent from 0 to {max}.").format(
        text=esc(short(text, 40)), max=MAX_HOLDOUT
    )


def holdout_leave_question(chain: ChainView) -> str:
    return _(
        "You have unsaved changes to the holdout of {name}.\n"
        "Save them, discard them, or keep editing?"
    ).format(name=esc(short(chain.name, 40)))


def holdout_left_behind(chain: ChainView, *, saved: bool) -> str:
    if saved:
        message = _("💾 Holdout of {name}: saved.")
    else:
        message = _("🗑 Holdout of {name}: changes discarded.")
    return message.format(name=esc(short(chain.name, 40)))


def _channel(step: StepView) -> str:
    if step.action is None:
        return "…"
    return "✉️" if isinstance(step.action, EmailAction) else "📱"


def minimap_label(step: StepView, unsaved: bool) -> str:
    """`2 · Reminder · ✉️ · if not opened ●`: ● unsaved changes, ⚠ blocks still missing,
    ⏹ stopped."""
    if isinstance(step.audience, TermsAudience):
        who = terms_short(step.audience)
    elif isinstance(step.audience, PreviousStepAudience):
        who = _("all")
    elif isinstance(step.audience, SegmentsAudience):
        who = ", ".join(step.audience.segments)
    else:
        who = "…"
    marks = (
        ("●" if unsaved else "")
        + ("⚠" if step.missing else "")
        + (STOPPED_MARK if step.stopped else "")
    )
    label = f"{step.position} · {short(step.name, 20)} · {_channel(step)} · {short(who, 22)}"
    return f"{label} {marks}".rstrip()


def _schedule_short(schedule: Schedule | None) -> str:
    if schedule is None:
        return _("not set")
    if schedule.send is Send.AFTER and schedule.after is not None:
        return _("after {delay}").format(delay=format_duration(schedule.after))
    if schedule.send is Send.AT and schedule.at is not None:
        return _("at {moment}, each customer's local time").format(
            moment=format_moment(schedule.at)
        )
    return _("now")


def _action_short(
    action: Action | None, sms_frame: SmsFrame, sms_count: SampleCount | None = None
) -> str:
    if action is None:
        return _("not set")
    if isinstance(action, EmailAction):
        subject = esc(short(action.subject, 40))
        if action.html:
            return _("email «{subject}» + HTML").format(subject=subject)
        return _("email «{subject}»").format(subject=subject)
    count = sms_count.longest if sms_count else sms_parts(sms_as_sent(action.text, sms_frame))
    return _("SMS, {parts}: «{text}»").format(
        parts=sms_parts_word(count.parts), text=esc(short(action.text, 40))
    )


def _conversion_short(conversion: Conversion | None, currency: str) -> str:
    if conversion is None:
        return _("not set")
    window = days_count(conversion.window_days)
    amount = money(conversion.min_amount, currency)
    if conversion.mechanics != DEFAULT_MECHANICS:
        kinds = ", ".join(_(MECHANIC_WORDS[mechanic]) for mechanic in conversion.mechanics)
        if conversion.min_amount:
            return _("orders within {window}, from {amount}: {kinds}").format(
                window=window, amount=amount, kinds=kinds
            )
        return _("orders within {window}: {kinds}").format(window=window, kinds=kinds)
    if conversion.min_amount:
        return _("an order within {window}, from {amount}").format(window=window, amount=amount)
    return _("an order within {window}").format(window=window)


def editor_overview(chain: ChainView, unsaved_step: int | None) -> str:
    lines = [
        f"🗺 <b>{esc(short(chain.name, 100))}</b> (#{chain.id})",
        f"{status(chain.status)} · {steps_count(len(chain.steps))} · "
        f"{enrollment_button(chain.enrollment).lower()}",
    ]
    if chain.holdout_percent:
        lines.append(holdout_note(chain))
    if not chain.steps:
        lines.append(_("No steps yet: ➕ Add step."))
    elif unsaved_step is not None:
        lines.append(_("● Step {position} has unsaved changes.").format(position=unsaved_step))
    incomplete = [step.position for step in chain.steps if step.missing]
    if incomplete:
        lines.append(
            _("⚠ Not complete yet: step {positions}.").format(
                positions=", ".join(map(str, incomplete))
            )
        )
    lines.append(_("Tap a step to edit it."))
    return "\n".join(lines)


def editor_step(
    chain: ChainView,
    step: StepView,
    unsaved_kind: BlockKind | None,
    note: str | None = None,
    *,
    sms_frame: SmsFrame = BARE_SMS,
    currency: str,
    sms_count: SampleCount | None = None,
) -> str:
    """`note`: what the change just made did, in the services' words (describe);
    `sms_frame`: the opt-out line and short links, counted in an SMS's parts; `currency`:
    the shop's (SHOP_CURRENCY), of the minimum amount; `sms_count`: an SMS counted over
    sample customers (the costliest is shown)."""
    rows = [
        (BlockKind.AUDIENCE, esc(_audience(step.audience, step.position))),
        (BlockKind.ACTION, _action_short(step.action, sms_frame, sms_count)),
        (BlockKind.SCHEDULE, _schedule_short(step.schedule)),
        (BlockKind.CONVERSION, _conversion_short(step.conversion, currency)),
    ]
    version = _(" · version {version}").format(version=step.version) if step.version > 1 else ""
    lines = [
        _("<b>Step {position} of {count} · {name}</b>").format(
            position=step.position, count=len(chain.steps), name=esc(short(step.name, 60))
        ),
        _("in {chain} ({status}){version}").format(
            chain=esc(short(chain.name, 60)), status=status(chain.status), version=version
        ),
    ]
    if step.stopped:
        lines.append(_(STOPPED_STEP))
    lines.append("")
    for kind, summary in rows:
        mark = " ●" if kind is unsaved_kind else ""
        lines.append(f"{block_title(kind)}: {summary}{mark}")
    if note:
        lines += ["", f"✅ {esc(note)}"]
    return "\n".join(lines)


# Without HTML of its own, an email gets one made from its text (channels/text_html.py).
HTML_FROM_TEXT = N_(
    "HTML: none of your own; one is made from the text, so opens and clicks are counted."
)


def _draft_lines(view: BlockScreen) -> list[str]:
    draft = view.draft
    match view.kind:
        case BlockKind.AUDIENCE:
            if view.step.position == 1:
                chosen = draft.get("segments") or []
                shown = ", ".join(esc(name) for name in chosen) if chosen else _("none yet")
                return [
                    _("Segments: {segments}").format(segments=shown),
                    _("Tap segments to choose one or more."),
                ]
            if draft.get("who") != "terms":
                return [
                    _("Everyone the previous step (step {position}) reached.").format(
                        position=view.step.position - 1
                    )
                ]
            known = Term._value2member_map_
            terms = [_(TERM_LABELS[Term(t)]) for t in draft.get("terms") or [] if t in known]
            joined = _terms_joined(terms, draft.get("match", "any")) if terms else None
            lines = [
                _("Only customers who, since the previous step's message, {terms}").format(
                    terms=joined or _("… (tap the terms)")
                ),
            ]
            if view.previous_channel == "sms":
                lines.append(_(TERMS_AFTER_SMS))
            return lines
        case BlockKind.ACTION:
            if draft.get("channel") == "sms":
                text = draft.get("text")
                if not text:
                    return [_("📱 SMS text: not written yet")]
                opt_out = (
                    [_(SMS_OPT_OUT_LINE).format(line=esc(view.sms_frame.shown_opt_out))]
                    if view.sms_frame.shown_opt_out
                    else []
                )
                counted = view.sms_count
                if counted is None:
                    count = sms_parts(sms_as_sent(text, view.sms_frame))
                    counted = SampleCount(count, count, None, 0)
                return [
                    _("📱 SMS: «{text}»").format(text=esc(short(text, 600))),
                    *opt_out,
                    *sms_count_lines(counted),
                ]
            html = draft.get("html")
            subject = esc(short(draft["subject"], 200)) if draft.get("subject") else "—"
            body = esc(short(draft["text"], 800)) if draft.get("text") else "—"
            if html and html.strip():
                html_line = _("HTML: {count} characters").format(count=len(html))
            else:
                html_line = _(HTML_FROM_TEXT)
            return [
                _("Subject: {subject}").format(subject=subject),
                _("Text: {text}").format(text=body),
                html_line,
                _("Placeholders like {example} are filled in per customer.").format(
                    example="{{ first_name }}"
                ),
            ]
        case BlockKind.SCHEDULE:
            send = draft.get("send")
            if send == "after":
                after = draft.get("after")
                lines = [
                    _("After {delay}").format(delay=after)
                    if after
                    else _("After… (tap or type a delay: 90m, 2d)")
                ]
            elif send == "at":
                at = draft.get("at")
                lines = [
                    _("At {moment}, in each customer's own time zone").format(moment=at)
                    if at
                    else _("At… (pick a day)")
                ]
            elif later_only_terms(view.step.audience):
                lines = [_("When: not chosen yet")]
            elif view.step.position > 1:
                lines = [_("Now: right after the previous step")]
            else:
                lines = [_("Now: at activation")]
            if view.step.position > 1 and view.terms_audience:
                wait = days_count(draft.get("wait_days", 30))
                lines.append(_("Terms are awaited at most {wait}.").format(wait=wait))
            later = later_only_terms(view.step.audience)
            if later:
                lines += ["", now_not_offered(later)]
            return lines
        case BlockKind.CONVERSION:
            min_amount = draft.get("min_amount") or 0
            window = days_count(draft.get("window_days", 7))
            lines = [_("Goal: an order within {window} of the message").format(window=window)]
            lines.append(
                _("Minimum amount: {amount}").format(amount=money(min_amount, view.currency))
                if min_amount
                else _("Any amount counts")
            )
            lines.append(_("What counts:"))
            lines += [
                f"• {_(MECHANIC_LABELS[mechanic])}: {_(MECHANIC_HINTS[mechanic])}"
                for mechanic in mechanics_of(draft)
            ]
            return lines


WAITING_FOR = {
    "subject": N_("✏️ Send the subject."),
    "text": N_("✏️ Send the text."),
    "html": N_("✏️ Send the HTML as text or as a .html file."),
    "sms": N_("✏️ Send the SMS text."),
    "after": N_("✏️ Or type a delay: 90m, 3h, 2d."),
    "wait": N_("✏️ Send the number of days to wait for the terms."),
    "window": N_("✏️ Send the conversion window in days."),
    "amount": N_("✏️ Send the minimum order amount (0 for any)."),
}


def editor_block(view: BlockScreen) -> str:
    unsaved = _(" ● unsaved") if view.unsaved else ""
    lines = [
        _("<b>{block}</b> · step {position} · {name}{unsaved}").format(
            block=block_title(view.kind),
            position=view.step.position,
            name=esc(short(view.step.name, 60)),
            unsaved=unsaved,
        ),
        *([_(STOPPED_STEP)] if view.step.stopped else []),
        "",
        *_draft_lines(view),
    ]
    if view.problems:
        lines += ["", _("⚠️ <b>Not saved:</b>")]
        lines += [f"• {esc(problem_text(problem))}" for problem in view.problems[:20]]
    if view.note:
        lines += ["", f"⚠️ {esc(view.note)}"]
    if view.placeholders is not None and view.placeholders.unknown:
        lines += ["", *placeholder_warning(view.placeholders)]
    if view.waiting_for in WAITING_FOR:
        lines += ["", _(WAITING_FOR[view.waiting_for])]
    elif view.waiting_for == "at" and view.today is not None:
        lines += ["", typed_moment_hint(view.today)]
    return "\n".join(fit(lines, LIMIT - 100))


def problem_text(problem: Problem) -> str:
    """A problem of a block, in the bot's words where the chain file's would show its
    syntax (`send: now`, `not_opened`)."""
    if problem.code:
        return _coded_problem(problem)
    field = problem.path.split("[")[0].split(".")[0]
    name = _(FIELD_NAMES[field]) if field in FIELD_NAMES else problem.path
    return f"{name}: {problem.translated()}" if problem.path else problem.translated()


def leave_question(step: StepView, kind: BlockKind) -> str:
    return _(
        "You have unsaved changes in step {position} ({name}), {block}.\n"
        "Save them, discard them, or keep editing?"
    ).format(position=step.position, name=esc(short(step.name, 40)), block=block_title(kind))


def carry_on(command: str) -> str:
    return _("Done. Now send {command} again.").format(command=esc(command))


def saved_toast(warnings: Sequence[Problem], version: int | None = None) -> str:
    """`version`: the one a live step's save made (None: the step changed in place)."""
    if version is None:
        saved = _("Saved")
    else:
        saved = _("Saved as version {version}").format(version=version)
    if not warnings:
        return saved
    notes = "; ".join(problem_text(w) for w in warnings)[:160]
    return _("{saved}. Note: {notes}").format(saved=saved, notes=notes)


def save_impact(kind: BlockKind, position: int, name: str, version: int, impact: str) -> str:
    """Save on a live step, asked first: `impact` is what it does, in the services' words."""
    return _(
        "💾 <b>Save {block} of step {position} ({name})?</b>\n"
        "This step has messages already, so saving makes version {version}:\n\n"
        "{impact}"
    ).format(
        block=block_title(kind),
        position=position,
        name=esc(short(name, 40)),
        version=version,
        impact=esc(impact),
    )


def stop_question(position: int, name: str, waiting: int, sent: int) -> str:
    """Stop step, asked first: `waiting` planned messages are skipped, `sent` stay sent."""
    lines = [
        _("⏹ <b>Stop step {position} ({name})?</b>").format(
            position=position, name=esc(short(name, 40))
        ),
        ngettext(
            '{count} waiting message will be skipped ("step stopped"), and nobody moves on'
            " to the steps after it.",
            '{count} waiting messages will be skipped ("step stopped"), and nobody moves on'
            " to the steps after it.",
            waiting,
        ).format(count=number(waiting)),
        _("The {count} already sent stay sent.").format(count=number(sent))
        if sent
        else _("Nothing was sent yet."),
        _("A stopped step stays stopped: to send again, add a step or copy the chain."),
    ]
    return "\n".join(lines)


def remove_question(chain: ChainView, step: StepView) -> str:
    lines = [
        _("🗑 <b>Remove step {position} ({name})?</b>").format(
            position=step.position, name=esc(short(step.name, 40))
        ),
        _("No message has come of it yet."),
    ]
    if step.position < len(chain.steps):
        lines.append(_("The steps after it move up one."))
    return "\n".join(lines)


def ask_step_name(chain: ChainView, position: int) -> str:
    name = esc(short(chain.name, 60))
    if position == 1:
        question = _("What is the main step (step 1) called?")
    else:
        question = _("What is step {position} called?").format(position=position)
    return f"<b>{name}</b>\n{question} " + _("Send a name, or tap the suggestion.")


def moment_passed(moment: datetime, timezone: str) -> str:
    # As typed (2026-12-01 10:00): the form every language's managers type.
    return _("{moment} has already passed ({zone}); pick a later moment.").format(
        moment=f"{moment:%Y-%m-%d %H:%M}", zone=timezone
    )


def not_understood(text: str, reason: str) -> str:
    return f"«{short(text, 40)}»: {reason}."


def not_days(text: str, limit: int) -> str:
    return _("«{text}» is not a number of days from 1 to {limit}.").format(
        text=short(text, 40), limit=limit
    )


def not_amount(text: str, problem: AmountProblem = AmountProblem.NOT_DIGITS) -> str:
    if problem is AmountProblem.TOO_BIG:
        return _("«{text}» is more than {limit}: send a smaller minimum amount.").format(
            text=short(text, 40), limit=number(MAX_AMOUNT)
        )
    return _(
        "«{text}» is not an amount: write it in digits, with a comma or point before the"
        " kopecks, like 1500, 1 500 or 999,90."
    ).format(text=short(text, 40))


# --- The editor's dead ends, mended (issue 14) -------------------------------------------

BUTTON_SAVE_ANYWAY = N_("💾 Save anyway")
ALREADY_SAVED_OR_DISCARDED = N_("These changes were already saved or discarded.")
TERMS_AFTER_SMS = N_(
    "The previous step sends an SMS: an SMS tells whether it was delivered and whether its"
    " links were clicked, never whether it was opened, so only those terms are offered."
)
# Why a step with such a term cannot go out the moment the previous one did.
LATER_TERM_REASONS = {
    Term.NOT_OPENED: N_("someone who has not opened the message yet may still open it"),
    Term.NOT_CLICKED: N_("someone who has not clicked yet may still click"),
    Term.NOT_DELIVERED: N_("a message not delivered yet may still be delivered"),
    Term.NOT_ORDERED: N_("someone who has not ordered yet may still order"),
}
PLACEHOLDERS_SHOWN = 15


def sms_parts_word(parts: int) -> str:
    """`1 SMS part`, `3 SMS parts`: how the bot counts parts everywhere."""
    return ngettext("{count} SMS part", "{count} SMS parts", parts).format(count=number(parts))


def _counted(count: SmsCount) -> str:
    return _("{characters} characters · {parts} ({encoding})").format(
        characters=number(count.characters),
        parts=sms_parts_word(count.parts),
        encoding=count.encoding,
    )


def sms_count_lines(counted: SampleCount) -> list[str]:
    """The composer's counter: the costliest rendering over the sample customers, and a
    warning when a placeholder switches the SMS to UCS-2."""
    count, whose = _counted(counted.longest), esc(short(counted.whose or "", 30))
    if counted.sampled < 2:
        # Nothing but the template, or the made-up customer: no customers yet.
        head = "📏 " + count
    else:
        head = ngettext(
            "📏 Up to {count}: {whose}'s, the longest of {sampled} customer checked",
            "📏 Up to {count}: {whose}'s, the longest of {sampled} customers checked",
            counted.sampled,
        ).format(count=count, whose=whose, sampled=number(counted.sampled))
    lines = [head]
    if counted.switched:
        names = ", ".join(f"{{{{ {name} }}}}" for name in counted.switching)
        if names:
            warning = _(
                "⚠️ The text alone goes as GSM-7 ({template}), but {placeholders} of some"
                " customers is not in the GSM-7 alphabet (Cyrillic, for instance), so their SMS"
                " goes as UCS-2, 70 characters a part: up to {parts}."
            )
        else:
            warning = _(
                "⚠️ The text alone goes as GSM-7 ({template}), but for some customers what the"
                " placeholders put in is not in the GSM-7 alphabet (Cyrillic, for instance), so"
                " their SMS goes as UCS-2, 70 characters a part: up to {parts}."
            )
        lines.append(
            warning.format(
                template=sms_parts_word(counted.template.parts),
                placeholders=esc(names),
                parts=sms_parts_word(counted.longest.parts),
            )
        )
    return lines


def _later_reasons(terms: Iterable[str]) -> str:
    why = [_(LATER_TERM_REASONS[Term(term)]) for term in terms if term in LATER_TERM_REASONS]
    return "; ".join(why)


def now_not_offered(terms: Sequence[Term]) -> str:
    """Under a When block whose step waits for a term known only later."""
    return _(
        "⏳ “Now” is not offered: {reasons}. Choose how long to wait (After…) or a moment"
        " (At…); the terms are checked then."
    ).format(reasons=_later_reasons(terms))


def _term_labels(terms: Iterable[str]) -> str:
    known = Term._value2member_map_
    return ", ".join(f"«{TERM_LABELS[Term(term)]}»" for term in terms if term in known)


def _coded_problem(problem: Problem) -> str:
    if problem.code == SEND_NOW_LATER_CODE:
        if problem.path == "send":
            return _(
                "“Now” cannot wait for {terms}: {reasons}. Choose After… or At… instead."
            ).format(terms=_term_labels(problem.about), reasons=_later_reasons(problem.about))
        return _(
            "{terms} need a wait: {reasons}. This step's ⏰ When is “Now”: set it to After… or"
            " At… first, then save these terms."
        ).format(terms=_term_labels(problem.about), reasons=_later_reasons(problem.about))
    if problem.code == OPENED_AFTER_SMS_CODE:
        return _(
            "The previous step sends an SMS, and nobody can tell whether an SMS was opened:"
            " choose «delivered» or «clicked» instead of {terms}."
        ).format(terms=_term_labels(problem.about))
    if problem.code == SMS_BEFORE_OPENED_CODE:
        following, *terms = problem.about
        return _(
            "Step {step} waits to see whether this message was opened ({terms}), which an SMS"
            " never tells: change the 👥 Who of step {step} first."
        ).format(step=following, terms=_term_labels(terms))
    return problem.translated()


def placeholder_warning(found: Placeholders) -> list[str]:
    """The placeholders no customer has, with the known ones offered; Save anyway keeps them."""
    lines = [_("⚠️ <b>These placeholders would come out empty:</b>")]
    for key, unknown in found.unknown[:10]:
        line = _(
            "• {field}, line {line}: {placeholder} is neither a customer field nor an"
            " attribute any customer has."
        ).format(
            field=FIELD_NAMES.get(key, key),
            line=unknown.line,
            placeholder=esc(f"{{{{ {short(unknown.name, 40)} }}}}"),
        )
        if unknown.suggestion:
            line += " " + _("Did you mean {placeholder}?").format(
                placeholder=esc(f"{{{{ {unknown.suggestion} }}}}")
            )
        lines.append(line)
    shown = [esc(f"{{{{ {name} }}}}") for name in found.known[:PLACEHOLDERS_SHOWN]]
    if len(found.known) > PLACEHOLDERS_SHOWN:
        shown.append("…")
    lines.append(_("Placeholders you can use: {names}").format(names=", ".join(shown)))
    lines.append(_("Fix the text, or tap 💾 Save anyway to keep it as it is."))
    return lines


def typed_moment_hint(today: date) -> str:
    """The forms a moment may be typed in, the example tomorrow 10:00 in the shop's zone."""
    return _("✏️ Or type a moment: {forms}.").format(forms=_moment_examples(today))


def moment_forms(today: date) -> str:
    """Why a typed moment was not understood: the forms that work, for tomorrow."""
    return _("try {forms}").format(forms=_moment_examples(today))


def _moment_examples(today: date) -> str:
    tomorrow = today + timedelta(days=1)
    return _("{iso}, {dotted} or tomorrow 10:00").format(
        iso=f"{tomorrow:%Y-%m-%d} 10:00", dotted=f"{tomorrow:%d.%m} 10:00"
    )


def name_refused(text: str, problems: Sequence[Problem]) -> str:
    """A typed name refused: what is wrong and what to send instead."""
    if len(text) > NAME_LIMIT:
        return _(
            "That name has {length} characters; a name fits in {limit}. Send a shorter one"
            " (or /cancel)."
        ).format(length=number(len(text)), limit=number(NAME_LIMIT))
    if "\n" in text.strip():
        return _("A name is one line: send it again without line breaks (or /cancel).")
    reason = "; ".join(problem.translated() for problem in problems)
    return _("That name cannot be used: {reason}. Send another one (or /cancel).").format(
        reason=esc(reason)
    )


def left_behind(step: StepView, kind: BlockKind, *, saved: bool) -> str:
    """What an older screen of a block says once the leave question is answered."""
    if saved:
        message = _("💾 Step {position} ({name}), {block}: saved.")
    else:
        message = _("🗑 Step {position} ({name}), {block}: changes discarded.")
    return message.format(
        position=step.position, name=esc(short(step.name, 40)), block=BLOCK_TITLES[kind]
    )


def cannot_activate(chain: ChainView, incomplete: Sequence[StepView]) -> str:
    name = esc(short(chain.name))
    if chain.status is not ChainStatus.DRAFT:
        return _("<b>{name}</b> is {status}; only a draft can be activated.").format(
            name=name, status=status(chain.status)
        )
    if not chain.steps:
        return _("<b>{name}</b> has no steps yet: add the main step first.").format(name=name)
    lines = [_("<b>{name}</b> is not complete yet:").format(name=name)]
    for step in incomplete:
        missing = ", ".join(block_title(kind) for kind in step.missing)
        lines.append(
            _("• step {position} ({name}): {missing}").format(
                position=step.position, name=esc(short(step.name, 40)), missing=missing
            )
        )
    return "\n".join(lines)


def _reasons(counts: dict[str, int]) -> list[str]:
    return [f"  · {esc(skip_reason(reason))}: {count}" for reason, count in counts.items()]


def frequency_cap(channel: str, cap: FrequencyCap) -> str:
    """A FREQUENCY_CAP_* setting in words, with its value."""
    return ngettext(
        "🚦 {channel}: at most {count} message per customer in {period}, over all chains "
        "({value}).",
        "🚦 {channel}: at most {count} messages per customer in {period}, over all chains "
        "({value}).",
        cap.limit,
    ).format(
        channel=_channel_name(channel),
        count=cap.limit,
        period=period_words(cap.period),
        value=esc(cap),
    )


def forecast(chain: ChainView, found: Forecast) -> str:
    lines = [
        _("🚀 <b>Activate {name}?</b>").format(name=esc(short(chain.name))),
        "",
        ngettext(
            "Main step ({channel}): {count} customer in its segments.",
            "Main step ({channel}): {count} customers in its segments.",
            found.audience,
        ).format(channel=_channel_name(found.channel), count=found.audience),
        _("✅ {count} would get it now.").format(count=found.reachable),
    ]
    if found.skipped:
        lines.append(
            _("⏭ {count} would be skipped:").format(count=number(sum(found.skipped.values())))
        )
        lines += _reasons(found.skipped)
    if found.holdout_percent:
        lines.append(
            _(
                "🧪 About {count} of them ({percent}) are held out: never sent, kept to"
                " measure the lift."
            ).format(count=found.held_out, percent=percent(found.holdout_percent / 100, 0))
        )
    if found.later_channels:
        later = ", ".join(_channel_name(channel) for channel in found.later_channels)
        lines.append(
            _("Later steps ({channels}): decided per customer as the chain runs.").format(
                channels=later
            )
        )
    lines += [frequency_cap(channel, cap) for channel, cap in found.caps]
    if found.enrollment is Enrollment.CONTINUOUS:
        lines.append(_("Customers who join the segments later enter the chain too."))
    if not found.audience and found.enrollment is Enrollment.ONCE:
        lines += ["", _("Nobody is in the segments yet, so there is nothing to send.")]
    return "\n".join(fit(lines))


def outbox_notice(channels: Iterable[str]) -> str:
    """SPEC §4: with no SMTP server or SMS gateway configured, the bot says that messages
    go to the outbox (where on the server is the operator's business: the log says)."""
    lines = []
    if "email" in channels:
        lines.append(_("📂 No SMTP server is set: emails are saved to the outbox, not sent."))
    if "sms" in channels:
        lines.append(_("📂 No SMS gateway is set: SMS are saved to the outbox, not sent."))
    return "".join("\n" + line for line in lines)


def activated(chain: ChainView, enrolled: int) -> str:
    return ngettext(
        "🚀 <b>{name}</b> is active: {count} customer enrolled.",
        "🚀 <b>{name}</b> is active: {count} customers enrolled.",
        enrolled,
    ).format(name=esc(short(chain.name)), count=enrolled)


def wave_progress(
    chain_name: str, step_name: str, progress: WaveProgress, finished: bool, *, paused: bool
) -> str:
    if finished:
        head = _("✅ Wave finished")
    else:
        head = _("⏸ Paused") if paused else _("📤 Sending")
    lines = [
        f"{head}: <b>{esc(short(chain_name))}</b>, {esc(short(step_name, 40))}",
        _("{done}/{total} done · sent {sent} · failed {failed}").format(
            done=progress.done,
            total=progress.total,
            sent=progress.sent,
            failed=progress.failed,
        ),
    ]
    if progress.uncertain:
        lines.append(
            _("uncertain (maybe sent, not resent): {count}").format(count=progress.uncertain)
        )
    if progress.held_out:
        lines.append(
            _("🧪 held out (never sent, for the lift): {count}").format(count=progress.held_out)
        )
    if progress.skipped:
        lines.append(_("skipped {count}:").format(count=number(sum(progress.skipped.values()))))
        lines += _reasons(progress.skipped)
    if progress.later:
        lines.append(
            _("⏳ {count} wait for their moment (a local time, quiet hours).").format(
                count=progress.later
            )
        )
    return "\n".join(fit(lines))


# --- Preview and test sends (handlers/preview.py) ---------------------------------------

BUTTON_PICK_CUSTOMER = N_("👤 Pick a customer")
BUTTON_SAMPLE_CUSTOMER = N_("🎲 Sample customer")
BUTTON_CHANGE_EMAIL = N_("✏️ Change my email")
BUTTON_CHANGE_PHONE = N_("✏️ Change my phone")
BUTTON_BACK_TO_PREVIEW = N_("◀ Preview")
BUTTON_BACK_TO_MESSAGE = N_("◀ Message")
NOTHING_TO_PREVIEW = N_("Nothing to preview yet: write the message first.")
ASK_PREVIEW_CUSTOMER = N_(
    "👤 <b>Whose data should the preview use?</b>\n"
    "Send a customer's external id, email or phone (or /cancel)."
)
HTML_PREVIEW_OWN = N_("🌐 The HTML version is in the file above.")
HTML_PREVIEW_FROM_TEXT = N_(
    "🌐 The HTML version in the file above is made from the text, so opens and clicks are counted."
)
HTML_PREVIEW_CAPTION = N_(
    "🌐 The HTML version, as the customer's mail program shows it. Here its links go "
    "straight to their targets; in the email they pass through the click tracker."
)
TEST_SENDING = N_("🧪 Sending the test…")
# The body of a preview is cut to leave room for the lines around it (in any language).
PREVIEW_BODY_BUDGET = LIMIT - 900


def masked_address(address: str) -> str:
    """`a***@example.com`, `+79*******67`: enough to recognise one's own, not to copy."""
    local, at, domain = address.rpartition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return address[:3] + "*" * max(len(address) - 5, 1) + address[-2:]


def _cut_body(text: str, budget: int = PREVIEW_BODY_BUDGET) -> str:
    """Escaped, within `budget` characters once escaped, with a note of what was cut."""
    cut = text
    while len(esc(cut)) > budget:
        cut = cut[: max(len(cut) - (len(esc(cut)) - budget) - 1, 0)]
    left = len(text) - len(cut)
    if not left:
        return esc(cut)
    note = ngettext(
        "… ({count} more character not shown)", "… ({count} more characters not shown)", left
    ).format(count=left)
    return f"{esc(cut)}\n{note}"


def _whose(customer_name: str | None, external_id: str, made_up: bool, picked: bool) -> str:
    if made_up:
        return _("👤 A made-up customer, Anna: there are no customers yet.")
    name = f"{esc(short(customer_name, 40))} " if customer_name else ""
    external = esc(short(external_id, 40))
    if picked:
        return _("👤 For {name}(id {id}, picked)").format(name=name, id=external)
    return _("👤 For {name}(id {id}, sample)").format(name=name, id=external)


@dataclass(frozen=True)
class PreviewHead:
    position: int
    step_name: str
    # None: the saved message; True / False: the open draft, with / without changes.
    draft_changed: bool | None
    customer_name: str | None
    external_id: str
    made_up: bool
    picked: bool
    # The customer lacks the channel's contact ("email" / "phone"), or None.
    missing_contact: str | None


def _preview_head(head: PreviewHead, channel: str) -> list[str]:
    which = ""
    if head.draft_changed:
        which = _(" (draft, unsaved changes included)")
    elif head.draft_changed is False:
        which = _(" (draft)")
    lines = [
        _("👁 <b>Preview</b> · step {position} · {name} · {channel}{which}").format(
            position=head.position,
            name=esc(short(head.step_name, 60)),
            channel=_channel_name(channel),
            which=which,
        ),
        _whose(head.customer_name, head.external_id, head.made_up, head.picked),
    ]
    if head.missing_contact == "email":
        lines.append(_("⚠️ This customer has no email: the engine would skip them."))
    elif head.missing_contact:
        lines.append(_("⚠️ This customer has no phone: the engine would skip them."))
    return lines


def email_preview(head: PreviewHead, subject: str, text: str, html_from_text: bool) -> str:
    where = HTML_PREVIEW_FROM_TEXT if html_from_text else HTML_PREVIEW_OWN
    return "\n".join(
        [
            *_preview_head(head, "email"),
            "",
            _("<b>Subject:</b> {subject}").format(subject=esc(short(subject, 300))),
            "",
            _cut_body(text.rstrip()),
            "",
            _(where),
        ]
    )


# Short links of an SMS preview listed with their targets; the rest counted.
PREVIEW_LINKS_SHOWN = 5


def sms_preview(
    head: PreviewHead,
    text: str,
    characters: int,
    parts: int,
    encoding: str,
    links: Sequence[str] = (),
) -> str:
    """`text` as sent, its links short (`/s/…`); `links`: where they lead, in order."""
    lines = [
        *_preview_head(head, "sms"),
        "",
        _cut_body(text) if text else _("(empty)"),
        "",
        _("📏 {characters} characters · {parts} ({encoding})").format(
            characters=number(characters), parts=sms_parts_word(parts), encoding=encoding
        ),
    ]
    if links:
        lines.append(_("🔗 Its short links lead to (a click counts as clicked):"))
        lines += [
            f"{index}. {esc(short(target, 120))}"
            for index, target in enumerate(links[:PREVIEW_LINKS_SHOWN], 1)
        ]
        if len(links) > PREVIEW_LINKS_SHOWN:
            more = len(links) - PREVIEW_LINKS_SHOWN
            lines.append(
                ngettext("… and {count} more link", "… and {count} more links", more).format(
                    count=more
                )
            )
    return "\n".join(lines)


def render_failed(head: PreviewHead, channel: str, error: str) -> str:
    return "\n".join(
        [
            *_preview_head(head, "email" if channel == "email" else "sms"),
            "",
            _("⚠️ <b>The message cannot be built for this customer:</b>"),
            esc(short(error, 1000)),
            _("The engine would fail this delivery the same way; fix the template and try again."),
        ]
    )


def no_such_customer(typed: str) -> str:
    return _(
        "No customer has the external id, email or phone «{typed}».\nSend another one (or /cancel)."
    ).format(typed=esc(short(typed, 60)))


def ask_test_address(channel: str, problem: str | None = None) -> str:
    if channel == "email":
        question = _(
            "🧪 <b>Where should test messages go?</b>\nSend your own email address; "
            "I will remember it for your next tests (or /cancel)."
        )
    else:
        question = _(
            "🧪 <b>Where should test messages go?</b>\nSend your own phone number; "
            "I will remember it for your next tests (or /cancel)."
        )
    lines = [question]
    if problem:
        lines.append(f"⚠️ {esc(short(problem, 200))}")
    return "\n".join(lines)


def test_sent(
    head: PreviewHead,
    channel: str,
    to: str,
    sent: bool,
    detail: str,
    to_outbox: bool,
) -> str:
    """`to_outbox`: no server is set, so the test went (or was to go) to the outbox,
    whose place on the server and whose errors (paths again) are in the log."""
    lines = [*_preview_head(head, "email" if channel == "email" else "sms")[:2], ""]
    if not sent and to_outbox:
        lines.append(_("⚠️ The test could not be saved to the outbox; the server's log says why."))
        return "\n".join(lines)
    if not sent:
        lines.append(_("⚠️ The test was not sent: {detail}").format(detail=esc(short(detail, 300))))
        return "\n".join(lines)
    if to_outbox and channel == "email":
        lines.append(_("🧪 Saved to the outbox (no SMTP server is set): no email was sent."))
    elif to_outbox:
        lines.append(_("🧪 Saved to the outbox (no SMS gateway is set): no SMS was sent."))
    else:
        lines.append(_("🧪 Test sent to {address}.").format(address=esc(masked_address(to))))
    lines.append(_("It is not a delivery: nothing shows in the stats."))
    if channel == "email":
        lines.append(
            _(
                "Its tracked links and unsubscribe link lead to a “not found” page: they belong "
                "to no delivery, so a test changes nothing."
            )
        )
    return "\n".join(lines)
