"""Everything the bot says, in one place.

Messages are sent with HTML parse mode: anything that comes from users or the
database (names, reasons, file lines) goes through `esc`. Every message stays
within Telegram's 4096 characters: lists are cut or split into pages here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

from telegram.constants import MessageLimit

from i18n import N_, _, ngettext, number
from models.amounts import MAX_AMOUNT, AmountProblem
from models.chainfile import (
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
)
from models.chains import ChainSummary, ChainView, StepView
from models.customers import ImportReport
from models.holds import Hold, HoldKind
from models.segments import SegmentInfo
from models.sms_parts import BARE_SMS, SampleCount, SmsCount, SmsFrame, sms_as_sent, sms_parts
from models.stats import ChainStats, DailyStats, MessageNumbers, StepStats, VersionStats
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


def plural(count: int, word: str) -> str:
    return f"{count} {word if count == 1 else word + 's'}"


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
        kept.append(f"… and {total - len(kept)} more")
    return kept


# --- Access and failures ---------------------------------------------------------------

NOT_AUTHORISED = "Sorry, this bot is private and you are not authorised to use it."
NEEDS_ADMIN = "Only admins can change things; you can still look at /chains and /stats."
NEEDS_OWNER = "Only an owner can manage admins."
PRIVATE_ONLY = "Please send this to me in a private chat."
GROUP_ONLY = "This works in a group chat: add me to your team's group and send it there."
FAILED = "Sorry, something went wrong on my side; please try again in a minute."
STALE_BUTTON = "That button is out of date."


def refused(reason: str) -> str:
    """A service's refusal (its own words, e.g. "chain 3 is draft; …") shown to the user."""
    return f"⚠️ {esc(reason[:1].upper() + reason[1:])}"


# --- Menu and help -----------------------------------------------------------------

MENU = "<b>Chainmail</b>\nWhat would you like to look at?"
BUTTON_CHAINS = "📋 Chains"
BUTTON_CUSTOMERS = "👥 Customers"
BUTTON_SEGMENTS = "🎯 Segments"
BUTTON_REPORTS = "📊 Reports"
BUTTON_HELP = "❓ Help"
BUTTON_MENU = "☰ Menu"
BUTTON_BACK = "◀ Back"
BUTTON_PREVIOUS = "◀"
BUTTON_NEXT = "▶"
BUTTON_PAUSE = "⏸ Pause"
BUTTON_RESUME = "▶️ Resume"
BUTTON_STATS = "📊 Stats"
BUTTON_REFRESH = "🔄 Refresh"

# (command, description) for Telegram's command menu and /help; see `commands_for`.
VIEWER_COMMANDS = (
    ("start", "Main menu"),
    ("chains", "Chains and their status"),
    ("stats", "Numbers of a chain: /stats [chain]"),
    ("subscribe", "Daily summary here: /subscribe [Area/City]"),
    ("unsubscribe", "No more daily summaries here"),
    ("help", "What I can do"),
)
ADMIN_COMMANDS = (
    ("pause", "Pause a chain: /pause <chain>"),
    ("resume", "Resume a chain: /resume <chain>"),
    ("pause_all", "Pause every active chain"),
    ("import", "Import customers from a CSV file"),
    ("cancel", "Stop what we are doing"),
)
OWNER_COMMANDS = (("admins", "Who may use the bot"),)
GROUP_COMMANDS = (
    ("stats", "Numbers of a chain: /stats [chain]"),
    ("chains", "Chains and their status"),
    ("subscribe", "Daily summaries in this chat"),
    ("unsubscribe", "No more daily summaries here"),
    ("help", "What I can do"),
)


def commands_for(role: Role) -> tuple[tuple[str, str], ...]:
    if role is Role.VIEWER:
        return VIEWER_COMMANDS
    if role is Role.ADMIN:
        return VIEWER_COMMANDS + ADMIN_COMMANDS
    return VIEWER_COMMANDS + ADMIN_COMMANDS + OWNER_COMMANDS


def help_text(role: Role) -> str:
    lines = ["<b>What I can do</b>", ""]
    lines += [f"/{command} — {esc(description)}" for command, description in commands_for(role)]
    lines += [
        "",
        "In a team group, /subscribe (admins) brings daily summaries there,",
        "and then anyone in the group may ask /stats.",
        "A chain is named by its id or by (part of) its name.",
    ]
    if role is Role.VIEWER:
        lines.append("You can look at everything; changes are for admins.")
    return "\n".join(lines)


CANCELLED = "OK, cancelled."
NOTHING_TO_CANCEL = "There is nothing to cancel."
UNKNOWN_MESSAGE = "I did not get that. /start shows the menu, /help what I can do."

# --- Chains ------------------------------------------------------------------------

STATUS = {
    ChainStatus.DRAFT: "📝 draft",
    ChainStatus.ACTIVE: "▶️ active",
    ChainStatus.PAUSED: "⏸ paused",
    ChainStatus.FINISHED: "✅ finished",
    ChainStatus.ARCHIVED: "🗄 archived",
}
NO_CHAINS = (
    "There are no chains yet. An operator can import one with "
    "<code>chainmail chains import FILE</code>."
)


def page_note(page: int, pages: int) -> str:
    return f" · page {page + 1}/{pages}" if pages > 1 else ""


def chain_list(chains: Sequence[ChainSummary], page: int, pages: int) -> str:
    lines = [f"📋 <b>Chains</b>{page_note(page, pages)}", ""]
    lines += [
        f"<b>#{c.id}</b> {esc(short(c.name))} — {STATUS[c.status]}, {plural(c.steps, 'step')}"
        + (f"\n   ⚠ {esc(short(c.hold_reason, 200))}" if c.hold_reason else "")
        for c in chains
    ]
    return "\n".join(lines)


def chain_button(chain: ChainSummary) -> str:
    return f"{STATUS[chain.status].split()[0]} {short(chain.name, 40)}"


def _audience(audience: Audience | None, position: int) -> str:
    if audience is None:
        return "audience not set"
    if isinstance(audience, SegmentsAudience):
        return "to " + ", ".join(audience.segments)
    if isinstance(audience, PreviousStepAudience):
        return f"all from step {position - 1}"
    return terms_short(audience)


def terms_short(audience: TermsAudience) -> str:
    """`if not opened or not clicked`: a step's terms in a few words."""
    joiner = " and " if audience.match is Match.ALL else " or "
    return "if " + joiner.join(term.value.replace("_", " ") for term in audience.terms)


def _step_line(step: StepView) -> str:
    if step.action is None:
        channel = "message not set"
    else:
        channel = "email" if isinstance(step.action, EmailAction) else "SMS"
    audience = esc(short(_audience(step.audience, step.position), 60))
    return f"{step.position}. {esc(short(step.name, 40))} — {channel}, {audience}"


def chain_card(chain: ChainView) -> str:
    lines = [
        f"<b>{esc(short(chain.name, 100))}</b> (#{chain.id})",
        f"{STATUS[chain.status]} · {plural(len(chain.steps), 'step')}",
        "",
    ]
    if chain.hold_reason:
        lines[2:2] = [f"⚠ Held by the engine: {esc(short(chain.hold_reason, 300))}"]
    return "\n".join(lines + fit([_step_line(step) for step in chain.steps]))


def chain_held(hold: Hold) -> str:
    """The notice to owners and admins of a chain the system paused."""
    title = f"⚠ <b>{esc(short(hold.chain_name, 100))}</b> (#{hold.chain_id}) is paused"
    reason = esc(short(hold.reason, 400))
    if hold.kind is HoldKind.DELIVERABILITY:
        return (
            f"{title} to protect your sender reputation: too many of its messages bounce or"
            f" are reported as spam.\n{reason}\n\nNothing more of it is sent. Check whom the"
            " step goes to (an old or bought list?) and what it says; the bounced addresses"
            " and those who complained are not mailed again. Then /resume"
            f" {hold.chain_id}: while the step stays over the limit, its next bounce or"
            " complaint pauses it again."
        )
    return (
        f"{title}: the engine could not go on with it.\n{reason}\n\n"
        f"Fix the step, then /resume {hold.chain_id}."
    )


PAUSED_TOAST = "Paused"
RESUMED_TOAST = "Resumed"


def paused(name: str) -> str:
    return f"⏸ <b>{esc(short(name))}</b> is paused: nothing of it is sent until you resume it."


def resumed(name: str) -> str:
    return f"▶️ <b>{esc(short(name))}</b> is running again; what waited goes out now."


def paused_all(names: Sequence[str]) -> str:
    if not names:
        return "No chain was running; nothing to pause."
    shown = ", ".join(esc(short(name, 30)) for name in names[:20])
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    return f"⏸ Paused {plural(len(names), 'chain')}: {shown}{more}."


def which_chain(query: str, found_several: bool) -> str:
    if not query:
        return "Which chain?"
    if found_several:
        return f"Several chains match «{esc(short(query))}». Which one?"
    return f"No chain matches «{esc(short(query))}». Pick one:"


NOTHING_TO_PAUSE = "No chain is running, so there is nothing to pause."
NOTHING_TO_RESUME = "No chain is paused, so there is nothing to resume."


# --- Stats -------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def _small_percent(part: int, whole: int) -> str:
    """Bounce and complaint rates, whose limits are fractions of a percent."""
    if not whole:
        return "–"
    return f"{part / whole:.2%}" if part < whole / 100 else f"{part / whole:.1%}"


def _deliverability(numbers: MessageNumbers) -> list[str]:
    """Bounces and spam complaints, of what was handed to the channel (models/protection.py);
    nothing when there are none."""
    return [
        f"{label} {count} ({_small_percent(count, numbers.handed)})"
        for count, label in ((numbers.bounced, "bounced"), (numbers.complained, "spam"))
        if count
    ]


# The latest versions of a step shown under it; older ones are only counted.
VERSIONS_SHOWN = 5


def _version_line(version: VersionStats, channel: str | None) -> str:
    if channel == "email":
        reach = f"{version.opened} opened ({_percent(version.opened, version.sent)})"
    else:
        reach = f"{version.delivered} delivered ({_percent(version.delivered, version.sent)})"
    return (
        f"v{version.version}: {version.sent} sent · {reach} · "
        f"{plural(version.orders, 'order')} · conv. {version.conversion_rate:.1%}"
    )


def _version_lines(step: StepStats) -> list[str]:
    """A line per version, only for a step edited while it ran (several versions)."""
    if len(step.versions) < 2:
        return []
    shown = step.versions[-VERSIONS_SHOWN:]
    lines = [_version_line(version, step.channel) for version in shown]
    earlier = len(step.versions) - len(shown)
    if earlier:
        lines.insert(0, f"… {plural(earlier, 'earlier version')}")
    return lines


def _step_stats(step: StepStats) -> str:
    """Four short lines a phone shows without scrolling sideways, then one per version
    if the step has several; zeros of trouble left out."""
    channel = {"email": "email", "sms": "SMS"}.get(step.channel or "", "message not set")
    progress = [f"sent {step.sent}/{step.coverage}" if step.coverage else "nothing sent yet"]
    for count, label in (
        (step.planned, "to go"),
        (step.failed, "failed"),
        (step.skipped, "skipped"),
        (step.uncertain, "uncertain"),
    ):
        if count:
            progress.append(f"{label} {count}")
    if step.channel == "email":
        reach = (
            f"opened {step.opened} ({_percent(step.opened, step.sent)}) · "
            f"clicked {step.clicked} ({_percent(step.clicked, step.sent)})"
        )
    else:
        # An SMS tells whether it was delivered and whether its short links were followed.
        reach = (
            f"delivered {step.delivered} ({_percent(step.delivered, step.sent)}) · "
            f"clicked {step.clicked} ({_percent(step.clicked, step.sent)})"
        )
    if step.unsubscribed:
        reach += f" · unsub {step.unsubscribed}"
    trouble = _deliverability(step)
    return "\n".join(
        [
            f"<b>{step.position}. {esc(short(step.name, 40))}</b> · {channel}",
            " · ".join(progress),
            reach,
            *(["⚠ " + " · ".join(trouble)] if trouble else []),
            f"🛒 {plural(step.orders, 'order')} · {step.revenue:.2f} · "
            f"conv. {step.conversion_rate:.1%}",
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


def stats_pages(stats: ChainStats) -> list[str]:
    """A chain's numbers, one block per step, in as few messages as fit Telegram's limit."""
    header = f"📊 <b>{esc(short(stats.name, 60))}</b> · {STATUS[ChainStatus(stats.status)]}"
    if not stats.steps:
        return [f"{header}\n\nThe chain has no steps yet."]
    # Room for the header and its page number (" · page 10/10").
    budget = LIMIT - len(header) - 30
    pages = _pages((_step_stats(step) for step in stats.steps), budget)
    return [
        f"{header}{page_note(number, len(pages))}\n\n" + "\n\n".join(blocks)
        for number, blocks in enumerate(pages)
    ]


REPORTS = "📊 <b>Reports</b>\nWhich chain's numbers?"

# --- Customers and segments --------------------------------------------------------


def customers(count: int) -> str:
    return (
        f"👥 <b>Customers</b>: {count}\n\n"
        "To add or update customers, send /import and then a CSV file with the columns "
        "<code>external_id,email,phone,first_name,last_name,timezone,tags</code> "
        "(tags separated by <code>;</code>; other columns become attributes)."
    )


NO_SEGMENTS = (
    "There are no segments yet. An operator adds one with "
    "<code>chainmail segments add NAME --tags a,b</code>."
)


def segment_list(segments: Sequence[SegmentInfo], page: int, pages: int) -> str:
    lines = [f"🎯 <b>Segments</b>{page_note(page, pages)}", ""]
    for segment in segments:
        if segment.tags:
            tags = esc(short(", ".join(segment.tags), 80))
            who = f"customers with {segment.match} of: {tags}"
        else:
            who = "all customers"
        lines.append(f"<b>{esc(short(segment.name, 40))}</b> — {who}")
    return "\n".join(lines)


# --- Import ------------------------------------------------------------------------

SEND_CSV = (
    "Send me the CSV file now (as a file). Columns: "
    "<code>external_id,email,phone,first_name,last_name,timezone,tags</code>; "
    "UTF-8 or cp1251, <code>,</code> or <code>;</code> separated. /cancel to stop."
)
SEND_ANOTHER = "Send another file, or /cancel."
STILL_WAITING_FOR_CSV = "I am waiting for a CSV file (send it as a file), or /cancel."
NOT_A_CSV = "That does not look like a CSV file; please send a .csv file, or /cancel."


def too_big(limit_mb: int) -> str:
    return (
        f"That file is over {limit_mb} MB, more than Telegram lets me download. "
        "Split it, or import it on the server with <code>chainmail customers import</code>."
    )


def importing(name: str) -> str:
    return f"⏳ Importing {esc(short(name))}…"


def import_report(name: str, report: ImportReport) -> str:
    lines = [
        f"✅ {esc(short(name))}: imported {plural(report.imported, 'customer')} "
        f"({report.created} new, {report.updated} updated)."
    ]
    if report.refused:
        lines.append(f"⚠️ {plural(report.refused, 'line')} refused:")
        # The service keeps the reasons of the first lines only; the count covers them all.
        errors = [esc(short(str(error), 200)) for error in report.errors]
        lines += fit(errors, total=report.refused)
    return "\n".join(lines)


# --- Group chats -------------------------------------------------------------------


def subscribed(timezone: str | None, default_timezone: str) -> str:
    zone = timezone or f"{default_timezone} (the default; /subscribe Area/City to change it)"
    return f"📬 This chat now gets a daily summary of the chains. Time zone: {esc(zone)}."


UNSUBSCRIBED = "This chat no longer gets daily summaries."
NOT_SUBSCRIBED = "This chat was not getting daily summaries."

# --- Reports: daily summaries and charts ----------------------------------------------

BUTTON_CHART = "📈 Chart"
NOTHING_TO_DRAW = "Nothing to draw yet: no message of this chain was sent and no order counted."


def chart_caption(name: str) -> str:
    return f"📈 <b>{esc(short(name, 60))}</b>: funnel per step, orders per day"


def _change(now: int, before: int) -> str:
    return f" ({now - before:+d})" if now != before else ""


def _summary_step(day: StepStats, before: StepStats, total: StepStats) -> str:
    """A step of a daily summary: yesterday with the change against the day before, then totals."""
    channel = {"email": "email", "sms": "SMS"}.get(total.channel or "", "message not set")
    if total.channel == "email":
        reach = [("opened", "opened"), ("clicked", "clicked")]
    else:
        reach = [("delivered", "delivered"), ("clicked", "clicked")]
    yesterday = [f"sent {day.sent}{_change(day.sent, before.sent)}"]
    yesterday += [
        f"{label} {getattr(day, name)}{_change(getattr(day, name), getattr(before, name))}"
        for name, label in reach
    ]
    yesterday += [
        f"{label} {count}{_change(count, earlier)}"
        for count, earlier, label in (
            (day.bounced, before.bounced, "bounced"),
            (day.complained, before.complained, "spam"),
        )
        if count
    ]
    yesterday.append(f"🛒 {day.orders}{_change(day.orders, before.orders)} · {day.revenue:.2f}")
    overall = [f"sent {total.sent}"]
    overall += [
        f"{label} {getattr(total, name)} ({_percent(getattr(total, name), total.sent)})"
        for name, label in reach
    ]
    overall.append(f"🛒 {total.orders} · {total.revenue:.2f} · conv. {total.conversion_rate:.1%}")
    trouble = [
        f"{label} {count}"
        for count, label in (
            (total.failed, "failed"),
            (total.uncertain, "uncertain"),
            (total.unsubscribed, "unsub"),
        )
        if count
    ]
    trouble += _deliverability(total)
    if total.skipped:
        reasons = ", ".join(
            f"{esc(short(reason, 30))} {count}"
            for reason, count in list(total.skipped_by_reason.items())[:3]
        )
        more = ", …" if len(total.skipped_by_reason) > 3 else ""
        trouble.append(f"skipped {total.skipped} ({reasons}{more})")
    lines = [
        f"<b>{total.position}. {esc(short(total.name, 40))}</b> · {channel}",
        "yesterday: " + " · ".join(yesterday),
        "in total: " + " · ".join(overall),
    ]
    if trouble:
        lines.append(" · ".join(trouble))
    return "\n".join(lines)


def summary_header(day: date, zone: str) -> str:
    return (
        f"📬 <b>Daily summary</b> · {day:%a %d %b} ({esc(zone)})\n"
        "Yesterday, with the change against the day before; totals to the end of yesterday."
    )


def summary_messages(numbers: DailyStats, header: str | None = None) -> list[str]:
    """One chain's part of a daily summary, in as few messages as Telegram's limit allows;
    `header` goes first (the summary's first chain)."""
    total = numbers.total
    title = f"📊 <b>{esc(short(total.name, 60))}</b> · {STATUS[ChainStatus(total.status)]}"
    if header:
        title = f"{header}\n\n{title}"
    if not total.steps:
        return [f"{title}\n\nThe chain has no steps yet."]
    # By position: a step saved between the three counts shows from the next summary on.
    days = {step.position: step for step in numbers.day.steps}
    befores = {step.position: step for step in numbers.day_before.steps}
    blocks = [
        _summary_step(days[step.position], befores[step.position], step)
        for step in total.steps
        if step.position in days and step.position in befores
    ]
    pages = _pages(blocks, LIMIT - len(title) - 30)
    return [
        f"{title}{page_note(number, len(pages))}\n\n" + "\n\n".join(page)
        for number, page in enumerate(pages)
    ]


# --- Admins ------------------------------------------------------------------------

ADMINS_USAGE = (
    "/admins — the list\n"
    "/admins add &lt;telegram id&gt; admin|viewer [name]\n"
    "/admins remove &lt;telegram id&gt;"
)


def admin_list(owner_ids: Sequence[int], people: Sequence[tuple[int, str, str | None]]) -> str:
    """Owners (from ADMIN_IDS) and the admins and viewers added in the bot."""
    lines = [f"<code>{owner}</code> — owner" for owner in owner_ids]
    for telegram_id, role, name in people:
        named = f" ({esc(short(name, 40))})" if name else ""
        lines.append(f"<code>{telegram_id}</code> — {role}{named}")
    lines = ["👤 <b>Who may use the bot</b>", "", *fit(lines)]
    return "\n".join([*lines, "", ADMINS_USAGE])


def admin_added(telegram_id: int, role: Role) -> str:
    return f"✅ <code>{telegram_id}</code> is now {role.value}."


def admin_removed(telegram_id: int) -> str:
    return f"✅ <code>{telegram_id}</code> may no longer use the bot."


def admin_unknown(telegram_id: int) -> str:
    return f"<code>{telegram_id}</code> was neither an admin nor a viewer."


OWNER_FROM_SETTINGS = "Owners are set with ADMIN_IDS on the server, not here."


# --- The chain editor (handlers/chain_editor.py) ------------------------------------

BUTTON_NEW_CHAIN = "➕ New chain"
BUTTON_EDIT = "✏️ Edit"
BUTTON_COPY = "📄 Copy"
BUTTON_ADD_STEP = "➕ Add step"
BUTTON_ACTIVATE = "🚀 Activate"
BUTTON_CONFIRM_ACTIVATE = "✅ Activate now"
BUTTON_RENAME = "✏️ Rename"
BUTTON_RENAME_STEP = "✏️ Rename step"
BUTTON_CLOSE = "✖ Close"
BUTTON_MAP = "🗺 Map"
BUTTON_PREVIOUS_STEP = "◀ Step"
BUTTON_NEXT_STEP = "Step ▶"
BUTTON_SAVE = "💾 Save"
BUTTON_DISCARD = "🗑 Discard"
BUTTON_KEEP_EDITING = "✏️ Keep editing"
BUTTON_CONFIRM_SAVE = "✅ Save"
BUTTON_STOP_STEP = "⏹ Stop step"
BUTTON_REMOVE_STEP = "🗑 Remove step"
BUTTON_EMAIL = "✉️ Email"
BUTTON_SMS = "📱 SMS"
BUTTON_TYPE_SUBJECT = "✏️ Subject"
BUTTON_TYPE_TEXT = "✏️ Text"
BUTTON_TYPE_HTML = "✏️ HTML"
BUTTON_NO_HTML = "🗑 No HTML"
BUTTON_ONLY_IF = "Only if…"
BUTTON_OTHER_DAY = "◀ Other day"
BUTTON_OTHER_HOUR = "◀ Other hour"
BUTTON_OTHER_WINDOW = "✏️ Other window"
BUTTON_MIN_AMOUNT = "✏️ Minimum amount"
BUTTON_PREVIEW = "👁 Preview"
BUTTON_TEST_SEND = "🧪 Send test to me"
NO_DAY = "·"
WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
# Typed moments: `tomorrow 10:00` (handlers/when.py); translations add their own words.
DAY_WORDS = {"today": 0, "tomorrow": 1, "сегодня": 0, "завтра": 1}

BLOCK_TITLES = {
    BlockKind.AUDIENCE: "👥 Who",
    BlockKind.ACTION: "✉️ Message",
    BlockKind.SCHEDULE: "⏰ When",
    BlockKind.CONVERSION: "🎯 Goal",
}
TERM_LABELS = {
    Term.OPENED: "opened",
    Term.NOT_OPENED: "not opened",
    Term.CLICKED: "clicked",
    Term.NOT_CLICKED: "not clicked",
    Term.DELIVERED: "delivered",
    Term.NOT_DELIVERED: "not delivered",
    Term.UNSUBSCRIBED_EMAIL: "unsubscribed email",
    Term.UNSUBSCRIBED_SMS: "unsubscribed SMS",
    Term.ORDERED: "ordered",
    Term.NOT_ORDERED: "not ordered",
}
SEND_LABELS = {"now": "Now", "after": "After…", "at": "At…"}
# What the fields of a block are called on screen, for the problems Save lists.
FIELD_NAMES = {
    "segments": "segments",
    "who": "who",
    "terms": "terms",
    "match": "match",
    "channel": "channel",
    "subject": "subject",
    "text": "text",
    "html": "HTML",
    "send": "when",
    "after": "delay",
    "at": "moment",
    "wait_days": "wait",
    "window_days": "window",
    "min_amount": "minimum amount",
    "goal": "goal",
}

ASK_CHAIN_NAME = "➕ <b>New chain</b>\nWhat is it called? Send the name (or /cancel)."
ASK_NEW_NAME = "Send the new name (or /cancel)."
EDITOR_CLOSED = "Editor closed. /start shows the menu."
DISCARDED_TOAST = "Changes discarded"
STEP_ADDED_TOAST = "Step added"
RENAMED_TOAST = "Renamed"
COPIED_TOAST = "Copied: this is the new chain"
ACTIVATED_TOAST = "Activated"
STOPPED_TOAST = "Step stopped"
REMOVED_TOAST = "Step removed"
STOPPED_MARK = "⏹"
STOPPED_STEP = "⏹ stopped: its blocks are shown as they were and can no longer change."
# Under the SMS text in the composer: the line every SMS ends with, counted in its parts.
SMS_OPT_OUT_LINE = "➕ then «{line}» (SMS_OPT_OUT_TEXT), counted below"
PICK_A_DAY = "Pick a day first."
NOT_HTML = "Please send the HTML as a .html file (up to 20 MB), or type it."
HTML_NOT_UTF8 = "That file is not UTF-8 text; please save it as UTF-8 and send it again."
NO_SUCH_DATE = "there is no such day"
YEAR_OUT_OF_RANGE = "the year must be between {first} and {last}"
NO_SUCH_TIME = "the time must be between 00:00 and 23:59"
NO_SEGMENTS_TO_PICK = (
    "There are no segments yet. Add one on the server: "
    "<code>chainmail segments add NAME --tags a,b</code>"
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
    return f"Everyone from step {position}"


def match_button(match: str) -> str:
    return "Match: all of them" if match == "all" else "Match: any of them"


def wait_button(days: int) -> str:
    return f"⏳ Wait up to {plural(days, 'day')}"


def days_short(days: int) -> str:
    return f"{days}d"


def month_title(year: int, month: int) -> str:
    return f"{MONTHS[month - 1]} {year}"


def back_to_step(position: int) -> str:
    return f"◀ Step {position}"


def default_step_name(position: int) -> str:
    return "Main mailing" if position == 1 else f"Step {position}"


def block_button(kind: str, saved: bool) -> str:
    return f"{BLOCK_TITLES[BlockKind(kind)]} {'✓' if saved else '…'}"


def enrollment_button(enrollment: Enrollment) -> str:
    return "Enrollment: once" if enrollment is Enrollment.ONCE else "Enrollment: continuous"


def enrollment_toast(enrollment: Enrollment) -> str:
    if enrollment is Enrollment.ONCE:
        return "The audience is taken once, at activation"
    return "Customers who join the segments later enter too"


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
        who = "all"
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
        return "not set"
    if schedule.send is Send.AFTER and schedule.after is not None:
        return f"after {format_duration(schedule.after)}"
    if schedule.send is Send.AT and schedule.at is not None:
        return f"at {format_moment(schedule.at)}, each customer's local time"
    return "now"


def _action_short(
    action: Action | None, sms_frame: SmsFrame, sms_count: SampleCount | None = None
) -> str:
    if action is None:
        return "not set"
    if isinstance(action, EmailAction):
        html = " + HTML" if action.html else ""
        return f"email «{esc(short(action.subject, 40))}»{html}"
    count = sms_count.longest if sms_count else sms_parts(sms_as_sent(action.text, sms_frame))
    return _("SMS, {parts}: «{text}»").format(
        parts=sms_parts_word(count.parts), text=esc(short(action.text, 40))
    )


def _conversion_short(conversion: Conversion | None) -> str:
    if conversion is None:
        return "not set"
    amount = f", from {conversion.min_amount}" if conversion.min_amount else ""
    return f"an order within {plural(conversion.window_days, 'day')}{amount}"


def editor_overview(chain: ChainView, unsaved_step: int | None) -> str:
    lines = [
        f"🗺 <b>{esc(short(chain.name, 100))}</b> (#{chain.id})",
        f"{STATUS[chain.status]} · {plural(len(chain.steps), 'step')} · "
        f"{enrollment_button(chain.enrollment).lower()}",
    ]
    if not chain.steps:
        lines.append("No steps yet: ➕ Add step.")
    elif unsaved_step is not None:
        lines.append(f"● Step {unsaved_step} has unsaved changes.")
    incomplete = [step.position for step in chain.steps if step.missing]
    if incomplete:
        lines.append("⚠ Not complete yet: step " + ", ".join(map(str, incomplete)) + ".")
    lines.append("Tap a step to edit it.")
    return "\n".join(lines)


def editor_step(
    chain: ChainView,
    step: StepView,
    unsaved_kind: BlockKind | None,
    note: str | None = None,
    *,
    sms_frame: SmsFrame = BARE_SMS,
    sms_count: SampleCount | None = None,
) -> str:
    """`note`: what the change just made did, in the services' words (describe);
    `sms_frame`: the opt-out line and short links, counted in an SMS's parts;
    `sms_count`: an SMS counted over sample customers (the costliest is shown)."""
    rows = [
        (BlockKind.AUDIENCE, esc(_audience(step.audience, step.position))),
        (BlockKind.ACTION, _action_short(step.action, sms_frame, sms_count)),
        (BlockKind.SCHEDULE, _schedule_short(step.schedule)),
        (BlockKind.CONVERSION, _conversion_short(step.conversion)),
    ]
    version = f" · version {step.version}" if step.version > 1 else ""
    lines = [
        f"<b>Step {step.position} of {len(chain.steps)} · {esc(short(step.name, 60))}</b>",
        f"in {esc(short(chain.name, 60))} ({STATUS[chain.status]}){version}",
    ]
    if step.stopped:
        lines.append(STOPPED_STEP)
    lines.append("")
    for kind, summary in rows:
        mark = " ●" if kind is unsaved_kind else ""
        lines.append(f"{BLOCK_TITLES[kind]}: {summary}{mark}")
    if note:
        lines += ["", f"✅ {esc(note)}"]
    return "\n".join(lines)


# Without HTML of its own, an email gets one made from its text (channels/text_html.py).
HTML_FROM_TEXT = (
    "HTML: none of your own; one is made from the text, so opens and clicks are counted."
)


def _draft_lines(view: BlockScreen) -> list[str]:
    draft = view.draft
    match view.kind:
        case BlockKind.AUDIENCE:
            if view.step.position == 1:
                chosen = draft.get("segments") or []
                shown = ", ".join(esc(name) for name in chosen) if chosen else "none yet"
                return [f"Segments: {shown}", "Tap segments to choose one or more."]
            if draft.get("who") != "terms":
                return [f"Everyone the previous step (step {view.step.position - 1}) reached."]
            known = Term._value2member_map_
            terms = [TERM_LABELS[Term(t)] for t in draft.get("terms") or [] if t in known]
            joiner = " and " if draft.get("match") == "all" else " or "
            lines = [
                "Only customers who, since the previous step's message, "
                + (joiner.join(terms) if terms else "… (tap the terms)"),
            ]
            if view.previous_channel == "sms":
                lines.append(_(TERMS_AFTER_SMS))
            return lines
        case BlockKind.ACTION:
            if draft.get("channel") == "sms":
                text = draft.get("text")
                if not text:
                    return ["📱 SMS text: not written yet"]
                opt_out = (
                    [SMS_OPT_OUT_LINE.format(line=esc(view.sms_frame.shown_opt_out))]
                    if view.sms_frame.shown_opt_out
                    else []
                )
                counted = view.sms_count
                if counted is None:
                    count = sms_parts(sms_as_sent(text, view.sms_frame))
                    counted = SampleCount(count, count, None, 0)
                return [f"📱 SMS: «{esc(short(text, 600))}»", *opt_out, *sms_count_lines(counted)]
            html = draft.get("html")
            return [
                f"Subject: {esc(short(draft['subject'], 200)) if draft.get('subject') else '—'}",
                f"Text: {esc(short(draft['text'], 800)) if draft.get('text') else '—'}",
                f"HTML: {len(html)} characters" if html and html.strip() else HTML_FROM_TEXT,
                "Placeholders like {{ first_name }} are filled in per customer.",
            ]
        case BlockKind.SCHEDULE:
            send = draft.get("send")
            if send == "after":
                after = draft.get("after")
                lines = [f"After {after}" if after else "After… (tap or type a delay: 90m, 2d)"]
            elif send == "at":
                at = draft.get("at")
                lines = [f"At {at}, in each customer's own time zone" if at else "At… (pick a day)"]
            elif later_only_terms(view.step.audience):
                lines = [_("When: not chosen yet")]
            elif view.step.position > 1:
                lines = ["Now: right after the previous step"]
            else:
                lines = ["Now: at activation"]
            if view.step.position > 1 and view.terms_audience:
                wait = plural(draft.get("wait_days", 30), "day")
                lines.append(f"Terms are awaited at most {wait}.")
            later = later_only_terms(view.step.audience)
            if later:
                lines += ["", now_not_offered(later)]
            return lines
        case BlockKind.CONVERSION:
            amount = draft.get("min_amount") or 0
            window = plural(draft.get("window_days", 7), "day")
            lines = [f"Goal: an order within {window} of the message"]
            lines.append(f"Minimum amount: {amount}" if amount else "Any amount counts")
            return lines


WAITING_FOR = {
    "subject": "✏️ Send the subject.",
    "text": "✏️ Send the text.",
    "html": "✏️ Send the HTML as text or as a .html file.",
    "sms": "✏️ Send the SMS text.",
    "after": "✏️ Or type a delay: 90m, 3h, 2d.",
    "wait": "✏️ Send the number of days to wait for the terms.",
    "window": "✏️ Send the conversion window in days.",
    "amount": "✏️ Send the minimum order amount (0 for any).",
}


def editor_block(view: BlockScreen) -> str:
    status = " ● unsaved" if view.unsaved else ""
    lines = [
        f"<b>{BLOCK_TITLES[view.kind]}</b> · step {view.step.position} · "
        f"{esc(short(view.step.name, 60))}{status}",
        *([STOPPED_STEP] if view.step.stopped else []),
        "",
        *_draft_lines(view),
    ]
    if view.problems:
        lines += ["", "⚠️ <b>Not saved:</b>"]
        lines += [f"• {esc(problem_text(problem))}" for problem in view.problems[:20]]
    if view.note:
        lines += ["", f"⚠️ {esc(view.note)}"]
    if view.placeholders is not None and view.placeholders.unknown:
        lines += ["", *placeholder_warning(view.placeholders)]
    if view.waiting_for in WAITING_FOR:
        lines += ["", WAITING_FOR[view.waiting_for]]
    elif view.waiting_for == "at" and view.today is not None:
        lines += ["", typed_moment_hint(view.today)]
    return "\n".join(fit(lines, LIMIT - 100))


def problem_text(problem: Problem) -> str:
    """A problem of a block, in the bot's words where the chain file's would show its
    syntax (`send: now`, `not_opened`)."""
    if problem.code:
        return _coded_problem(problem)
    field = FIELD_NAMES.get(problem.path.split("[")[0].split(".")[0], problem.path)
    return f"{field}: {problem.message}" if problem.path else problem.message


def leave_question(step: StepView, kind: BlockKind) -> str:
    return (
        f"You have unsaved changes in step {step.position} ({esc(short(step.name, 40))}), "
        f"{BLOCK_TITLES[kind]}.\nSave them, discard them, or keep editing?"
    )


def carry_on(command: str) -> str:
    return f"Done. Now send {esc(command)} again."


def saved_toast(warnings: Sequence[Problem], version: int | None = None) -> str:
    """`version`: the one a live step's save made (None: the step changed in place)."""
    saved = "Saved" if version is None else f"Saved as version {version}"
    if not warnings:
        return saved
    return f"{saved}. Note: " + "; ".join(problem_text(w) for w in warnings)[:160]


def save_impact(kind: BlockKind, position: int, name: str, version: int, impact: str) -> str:
    """Save on a live step, asked first: `impact` is what it does, in the services' words."""
    return (
        f"💾 <b>Save {BLOCK_TITLES[kind]} of step {position} ({esc(short(name, 40))})?</b>\n"
        f"This step has messages already, so saving makes version {version}:\n\n"
        f"{esc(impact)}"
    )


def stop_question(position: int, name: str, waiting: int, sent: int) -> str:
    """Stop step, asked first: `waiting` planned messages are skipped, `sent` stay sent."""
    lines = [
        f"⏹ <b>Stop step {position} ({esc(short(name, 40))})?</b>",
        f"{waiting:,} waiting {'message' if waiting == 1 else 'messages'} will be skipped"
        ' ("step stopped"), and nobody moves on to the steps after it.',
        f"The {sent:,} already sent stay sent." if sent else "Nothing was sent yet.",
        "A stopped step stays stopped: to send again, add a step or copy the chain.",
    ]
    return "\n".join(lines)


def remove_question(chain: ChainView, step: StepView) -> str:
    lines = [
        f"🗑 <b>Remove step {step.position} ({esc(short(step.name, 40))})?</b>",
        "No message has come of it yet.",
    ]
    if step.position < len(chain.steps):
        lines.append("The steps after it move up one.")
    return "\n".join(lines)


def ask_step_name(chain: ChainView, position: int) -> str:
    which = "the main step (step 1)" if position == 1 else f"step {position}"
    return (
        f"<b>{esc(short(chain.name, 60))}</b>\nWhat is {which} called? "
        "Send a name, or tap the suggestion."
    )


def moment_passed(moment: datetime, timezone: str) -> str:
    return f"{moment:%Y-%m-%d %H:%M} has already passed ({timezone}); pick a later moment."


def not_understood(text: str, reason: str) -> str:
    return f"«{short(text, 40)}»: {reason}."


def not_days(text: str, limit: int) -> str:
    return f"«{short(text, 40)}» is not a number of days from 1 to {limit}."


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
    reasons = [_(LATER_TERM_REASONS[Term(term)]) for term in terms if term in LATER_TERM_REASONS]
    return "; ".join(reasons)


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
    return problem.message


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
    reason = "; ".join(problem.message for problem in problems)
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
    if chain.status is not ChainStatus.DRAFT:
        return f"<b>{esc(short(chain.name))}</b> is {chain.status}; only a draft can be activated."
    if not chain.steps:
        return f"<b>{esc(short(chain.name))}</b> has no steps yet: add the main step first."
    lines = [f"<b>{esc(short(chain.name))}</b> is not complete yet:"]
    for step in incomplete:
        missing = ", ".join(BLOCK_TITLES[kind] for kind in step.missing)
        lines.append(f"• step {step.position} ({esc(short(step.name, 40))}): {missing}")
    return "\n".join(lines)


def _reasons(counts: dict[str, int]) -> list[str]:
    return [f"  · {esc(reason or 'other')}: {count}" for reason, count in counts.items()]


def forecast(chain: ChainView, found: Forecast) -> str:
    channel = "email" if found.channel == "email" else "SMS"
    lines = [
        f"🚀 <b>Activate {esc(short(chain.name))}?</b>",
        "",
        f"Main step ({channel}): {found.audience} customers in its segments.",
        f"✅ {found.reachable} would get it now.",
    ]
    if found.skipped:
        lines.append(f"⏭ {sum(found.skipped.values())} would be skipped:")
        lines += _reasons(found.skipped)
    if found.later_channels:
        later = ", ".join("email" if c == "email" else "SMS" for c in found.later_channels)
        lines.append(f"Later steps ({later}): decided per customer as the chain runs.")
    if found.enrollment is Enrollment.CONTINUOUS:
        lines.append("Customers who join the segments later enter the chain too.")
    if not found.audience and found.enrollment is Enrollment.ONCE:
        lines += ["", "Nobody is in the segments yet, so there is nothing to send."]
    return "\n".join(fit(lines))


def outbox_notice(channels: Iterable[str], outbox_dir: str) -> str:
    """SPEC §4: with no SMTP server or SMS gateway configured, the bot says where messages go."""
    lines = []
    if "email" in channels:
        lines.append(f"📂 No SMTP server is set up: emails are written to {esc(outbox_dir)}.")
    if "sms" in channels:
        where = esc(f"{outbox_dir}/sms.jsonl")
        lines.append(f"📂 No SMS gateway is set up: SMS are written to {where}.")
    return "".join("\n" + line for line in lines)


def activated(chain: ChainView, enrolled: int) -> str:
    return f"🚀 <b>{esc(short(chain.name))}</b> is active: {plural(enrolled, 'customer')} enrolled."


def wave_progress(
    chain_name: str, step_name: str, progress: WaveProgress, finished: bool, *, paused: bool
) -> str:
    head = "✅ Wave finished" if finished else ("⏸ Paused" if paused else "📤 Sending")
    lines = [
        f"{head}: <b>{esc(short(chain_name))}</b>, {esc(short(step_name, 40))}",
        f"{progress.done}/{progress.total} done · sent {progress.sent} · failed {progress.failed}",
    ]
    if progress.uncertain:
        lines.append(f"uncertain (maybe sent, not resent): {progress.uncertain}")
    if progress.skipped:
        lines.append(f"skipped {sum(progress.skipped.values())}:")
        lines += _reasons(progress.skipped)
    if progress.later:
        lines.append(f"⏳ {progress.later} wait for their moment (a local time, quiet hours).")
    return "\n".join(fit(lines))


# --- Preview and test sends (handlers/preview.py) ---------------------------------------

BUTTON_PICK_CUSTOMER = "👤 Pick a customer"
BUTTON_SAMPLE_CUSTOMER = "🎲 Sample customer"
BUTTON_CHANGE_EMAIL = "✏️ Change my email"
BUTTON_CHANGE_PHONE = "✏️ Change my phone"
BUTTON_BACK_TO_PREVIEW = "◀ Preview"
BUTTON_BACK_TO_MESSAGE = "◀ Message"
NOTHING_TO_PREVIEW = "Nothing to preview yet: write the message first."
ASK_PREVIEW_CUSTOMER = (
    "👤 <b>Whose data should the preview use?</b>\n"
    "Send a customer's external id, email or phone (or /cancel)."
)
HTML_PREVIEW_OWN = "🌐 The HTML version is in the file above."
HTML_PREVIEW_FROM_TEXT = (
    "🌐 The HTML version in the file above is made from the text, so opens and clicks are counted."
)
HTML_PREVIEW_CAPTION = (
    "🌐 The HTML version, as the customer's mail program shows it. Here its links go "
    "straight to their targets; in the email they pass through the click tracker."
)
TEST_SENDING = "🧪 Sending the test…"
# The body of a preview is cut to leave room for the lines around it.
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
    return esc(cut) + (f"\n… ({plural(left, 'more character')} not shown)" if left else "")


def _whose(customer_name: str | None, external_id: str, made_up: bool, picked: bool) -> str:
    if made_up:
        return "👤 A made-up customer, Anna: there are no customers yet."
    name = f"{esc(short(customer_name, 40))} " if customer_name else ""
    how = "picked" if picked else "sample"
    return f"👤 For {name}(id {esc(short(external_id, 40))}, {how})"


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
        which = " (draft, unsaved changes included)"
    elif head.draft_changed is False:
        which = " (draft)"
    lines = [
        f"👁 <b>Preview</b> · step {head.position} · {esc(short(head.step_name, 60))} · "
        f"{channel}{which}",
        _whose(head.customer_name, head.external_id, head.made_up, head.picked),
    ]
    if head.missing_contact:
        lines.append(f"⚠️ This customer has no {head.missing_contact}: the engine would skip them.")
    return lines


def email_preview(head: PreviewHead, subject: str, text: str, html_from_text: bool) -> str:
    where = HTML_PREVIEW_FROM_TEXT if html_from_text else HTML_PREVIEW_OWN
    return "\n".join(
        [
            *_preview_head(head, "email"),
            "",
            f"<b>Subject:</b> {esc(short(subject, 300))}",
            "",
            _cut_body(text.rstrip()),
            "",
            where,
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
        *_preview_head(head, "SMS"),
        "",
        _cut_body(text) if text else "(empty)",
        "",
        _("📏 {characters} characters · {parts} ({encoding})").format(
            characters=number(characters), parts=sms_parts_word(parts), encoding=encoding
        ),
    ]
    if links:
        lines.append("🔗 Its short links lead to (a click counts as clicked):")
        lines += [
            f"{number}. {esc(short(target, 120))}"
            for number, target in enumerate(links[:PREVIEW_LINKS_SHOWN], 1)
        ]
        if len(links) > PREVIEW_LINKS_SHOWN:
            lines.append(f"… and {plural(len(links) - PREVIEW_LINKS_SHOWN, 'more link')}")
    return "\n".join(lines)


def render_failed(head: PreviewHead, channel: str, error: str) -> str:
    return "\n".join(
        [
            *_preview_head(head, "email" if channel == "email" else "SMS"),
            "",
            "⚠️ <b>The message cannot be built for this customer:</b>",
            esc(short(error, 1000)),
            "The engine would fail this delivery the same way; fix the template and try again.",
        ]
    )


def no_such_customer(typed: str) -> str:
    return (
        f"No customer has the external id, email or phone «{esc(short(typed, 60))}».\n"
        "Send another one (or /cancel)."
    )


def ask_test_address(channel: str, problem: str | None = None) -> str:
    what = "email address" if channel == "email" else "phone number"
    lines = [
        f"🧪 <b>Where should test messages go?</b>\nSend your own {what}; "
        "I will remember it for your next tests (or /cancel)."
    ]
    if problem:
        lines.append(f"⚠️ {esc(short(problem, 200))}")
    return "\n".join(lines)


def test_sent(
    head: PreviewHead,
    channel: str,
    to: str,
    sent: bool,
    detail: str,
    outbox: str | None,
) -> str:
    lines = [*_preview_head(head, "email" if channel == "email" else "SMS")[:2], ""]
    if not sent:
        lines.append(f"⚠️ The test was not sent: {esc(short(detail, 300))}")
        return "\n".join(lines)
    if outbox is not None:
        missing = "SMTP server" if channel == "email" else "SMS gateway"
        lines.append(f"🧪 Written to {esc(outbox)}: no {missing} is configured.")
    else:
        lines.append(f"🧪 Test sent to {esc(masked_address(to))}.")
    lines.append("It is not a delivery: nothing shows in the stats.")
    if channel == "email":
        lines.append(
            "Its tracked links and unsubscribe link lead to a “not found” page: they belong "
            "to no delivery, so a test changes nothing."
        )
    return "\n".join(lines)
