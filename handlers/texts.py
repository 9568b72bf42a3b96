"""Everything the bot says, in one place.

Messages are sent with HTML parse mode: anything that comes from users or the
database (names, reasons, file lines) goes through `esc`. Every message stays
within Telegram's 4096 characters: lists are cut or split into pages here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from html import escape

from telegram.constants import MessageLimit

from models.chainfile import (
    Audience,
    EmailAction,
    Match,
    PreviousStepAudience,
    SegmentsAudience,
    TermsAudience,
)
from models.chains import ChainSummary, ChainView, StepView
from models.customers import ImportReport
from models.segments import SegmentInfo
from models.stats import ChainStats, DailyStats, StepStats
from models.tables import ChainStatus, Role

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
    return "\n".join(lines + fit([_step_line(step) for step in chain.steps]))


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


def _step_stats(step: StepStats) -> str:
    """Four short lines a phone shows without scrolling sideways; zeros of trouble left out."""
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
        reach = f"delivered {step.delivered} ({_percent(step.delivered, step.sent)})"
    if step.unsubscribed:
        reach += f" · unsub {step.unsubscribed}"
    return "\n".join(
        [
            f"<b>{step.position}. {esc(short(step.name, 40))}</b> · {channel}",
            " · ".join(progress),
            reach,
            f"🛒 {plural(step.orders, 'order')} · {step.revenue:.2f} · "
            f"conv. {step.conversion_rate:.1%}",
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
        reach = [("delivered", "delivered")]
    yesterday = [f"sent {day.sent}{_change(day.sent, before.sent)}"]
    yesterday += [
        f"{label} {getattr(day, name)}{_change(getattr(day, name), getattr(before, name))}"
        for name, label in reach
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
