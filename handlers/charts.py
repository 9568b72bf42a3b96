"""PNG charts of a chain for a phone screen: the funnel of each step, and orders per day.

`render_chart` is plain data in, PNG bytes out. It takes a few hundred
milliseconds of CPU, so `chain_chart_png`, which gathers the data, runs it in a
thread (`asyncio.to_thread`) to keep the bot's and the engine's loop free.
Matplotlib's object API is used, not pyplot, whose global state is not safe
across threads. Its words are in the current language (i18n): `asyncio.to_thread`
runs the rendering in a copy of the caller's context, language included.

Names are drawn with matplotlib's own font, DejaVu Sans (Latin, Cyrillic, arrows; no
emoji, and no font on the machines we run on has colour emoji that Agg could draw):
what it has no glyph for is left out of a name (`drawable`), not drawn as an empty box.
"""

from __future__ import annotations

import asyncio
import io
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font

from handlers import texts
from i18n import N_, _, ngettext, percent
from models.db import Database
from models.lift import wilson_interval
from models.stats import ChainStats, HoldoutStats, conversions_by_day
from models.summaries import day_start

# 1080 px wide, the width of most phone screens, so Telegram shows it unscaled.
DPI = 100
WIDTH_INCHES = 10.8
# A phone shows the picture about 2.7 times smaller: 20 pt here reads as 7 pt there.
FONT = 20
TITLE_FONT = 24
# More steps than this would make bars too thin to read; the title says how many are left out.
FUNNEL_STEPS_SHOWN = 12
STEP_ROW_INCHES = 0.9
FUNNEL_EXTRA_INCHES = 2.4
DAYS_PANEL_INCHES = 6.0
# The holdout's comparison, for a chain with one: two bars and the lift.
HOLDOUT_PANEL_INCHES = 3.2
HOLDOUT_COLOURS = ("#2171b5", "#969696")
# Steps named in the orders-per-day legend; the others are added up as one.
DAY_SERIES_NAMED = 5
DAYS_SHOWN = 14

# The font has them, drawing nothing: an emoji's "as a picture" mark (U+FE0F) and its kin.
VARIATION_SELECTORS = ("\ufe00", "\ufe0f")

STAGES = ("sent", "reached", "clicked", "ordered")
STAGE_LABELS = (N_("sent"), N_("opened / delivered"), N_("clicked"), N_("ordered"))
STAGE_COLOURS = ("#c6dbef", "#6baed6", "#2171b5", "#e6550d")
SERIES_COLOURS = ("#2171b5", "#e6550d", "#31a354", "#756bb1", "#de2d26", "#969696")


@dataclass(frozen=True)
class FunnelStep:
    position: int
    name: str
    sent: int
    # Opened for an email, delivered for an SMS (`reached_label` says which, untranslated).
    reached: int
    reached_label: str
    clicked: int
    ordered: int
    bounced: int = 0
    complained: int = 0


@dataclass(frozen=True)
class ChainChart:
    title: str
    steps: list[FunnelStep]
    day_labels: list[str]
    # {step position: orders on each day of `day_labels`}
    orders_per_day: dict[int, list[int]]
    # The chain's holdout, drawn as a third panel.
    holdout: HoldoutStats | None = None

    @property
    def is_empty(self) -> bool:
        nothing_sent = all(step.sent == 0 for step in self.steps)
        no_orders = all(count == 0 for counts in self.orders_per_day.values() for count in counts)
        return nothing_sent and no_orders


def chart_size(steps: int, *, holdout: bool = False) -> tuple[int, int]:
    """The picture's (width, height) in pixels for a chain of `steps` steps (`holdout`:
    with the holdout's panel)."""
    rows = max(1, min(steps, FUNNEL_STEPS_SHOWN))
    height = FUNNEL_EXTRA_INCHES + STEP_ROW_INCHES * rows + DAYS_PANEL_INCHES
    if holdout:
        height += HOLDOUT_PANEL_INCHES
    return round(WIDTH_INCHES * DPI), round(height * DPI)


@cache
def _font_characters() -> frozenset[int]:
    """The code points the charts' font (matplotlib's default) has glyphs for."""
    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(FT2Font(path).get_charmap())


def drawable(text: str) -> str:
    """`text` without the characters the charts' font cannot draw (emoji), nor the
    invisible ones that join or colour them, the spaces they leave closed up."""
    characters = _font_characters()
    kept = "".join(
        character
        for character in text
        if ord(character) in characters
        and unicodedata.category(character) != "Cf"
        and not VARIATION_SELECTORS[0] <= character <= VARIATION_SELECTORS[1]
    )
    return " ".join(kept.split())


def render_chart(chart: ChainChart) -> bytes | None:
    """The PNG, or None when there is nothing to draw (nothing sent, no orders)."""
    figure = chart_figure(chart)
    if figure is None:
        return None
    buffer = io.BytesIO()
    # No bbox_inches="tight": it would change the size, which is chosen for phones.
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def chart_figure(chart: ChainChart) -> Figure | None:
    """The chart drawn, not yet rendered; None when there is nothing to draw."""
    if chart.is_empty:
        return None
    width, height = chart_size(len(chart.steps), holdout=chart.holdout is not None)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    funnel_rows = max(1, min(len(chart.steps), FUNNEL_STEPS_SHOWN))
    funnel_inches = FUNNEL_EXTRA_INCHES + STEP_ROW_INCHES * funnel_rows
    ratios = [funnel_inches, DAYS_PANEL_INCHES]
    if chart.holdout is not None:
        ratios.append(HOLDOUT_PANEL_INCHES)
    grid = figure.add_gridspec(len(ratios), 1, height_ratios=ratios)
    # Names are text, not TeX: "$5 off, then $10" is not a formula.
    figure.suptitle(
        _short(drawable(chart.title), 40), fontsize=TITLE_FONT, fontweight="bold", parse_math=False
    )
    _draw_funnel(figure.add_subplot(grid[0]), chart.steps)
    _draw_days(figure.add_subplot(grid[1]), chart)
    if chart.holdout is not None:
        _draw_holdout(figure.add_subplot(grid[2]), chart.holdout)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    return figure


async def chain_chart_png(
    db: Database,
    stats: ChainStats,
    *,
    last_day: date,
    zone: str,
    until: datetime | None = None,
) -> bytes | None:
    """The chart of a chain's numbers and its orders per day up to `last_day` in `zone`
    (its orders up to `until` only, a moment of that day, when given: a summary's),
    rendered in a thread; None when there is nothing to draw."""
    first_day = last_day - timedelta(days=DAYS_SHOWN - 1)
    days = [first_day + timedelta(days=offset) for offset in range(DAYS_SHOWN + 1)]
    starts = [day_start(day, zone) for day in days]
    if until is not None:
        starts[-1] = until
    per_day = await conversions_by_day(db, stats.chain_id, starts)
    chart = ChainChart(
        title=stats.name,
        steps=[
            FunnelStep(
                position=step.position,
                name=step.name,
                sent=step.sent,
                reached=step.opened if step.channel == "email" else step.delivered,
                reached_label=N_("opened") if step.channel == "email" else N_("delivered"),
                clicked=step.clicked,
                ordered=step.orders,
                bounced=step.bounced,
                complained=step.complained,
            )
            for step in stats.steps
        ],
        day_labels=[f"{day:%d.%m}" for day in days[:-1]],
        orders_per_day=per_day,
        holdout=stats.holdout,
    )
    if chart.is_empty:
        return None
    return await asyncio.to_thread(render_chart, chart)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _draw_funnel(axes: Axes, steps: list[FunnelStep]) -> None:
    """One row per step, the stages overlaid from the widest (sent) to the narrowest."""
    shown = steps[:FUNNEL_STEPS_SHOWN]
    left_out = len(steps) - len(shown)
    title = _("Funnel per step")
    if left_out:
        title = _("Funnel per step (first {shown} of {total})").format(
            shown=len(shown), total=len(steps)
        )
    axes.set_title(title, fontsize=FONT, loc="left")
    widest = max((step.sent for step in shown), default=0) or 1
    for row, step in enumerate(shown):
        values = (step.sent, step.reached, step.clicked, step.ordered)
        for value, colour, height in zip(
            values, STAGE_COLOURS, (0.7, 0.56, 0.42, 0.28), strict=True
        ):
            axes.barh(row, value, height=height, color=colour)
        # A name of emoji alone leaves the step's number.
        name = " ".join((f"{step.position}.", _short(drawable(step.name), 18))).rstrip()
        label = (
            f"{name}: {step.sent} → "
            f"{step.reached} {_(step.reached_label)} → {step.clicked} → {step.ordered}"
        )
        trouble = [
            _(word).format(count=count)
            for count, word in (
                (step.bounced, N_("{count} bounced")),
                (step.complained, N_("{count} spam")),
            )
            if count
        ]
        if trouble:
            label += f" ({', '.join(trouble)})"
        axes.text(
            widest * 0.01, row - 0.38, label, fontsize=FONT - 4, va="bottom", parse_math=False
        )
    axes.set_ylim(len(shown) - 0.5, -0.9)
    axes.set_xlim(0, widest * 1.02)
    # The numbers are in the labels; an axis would only crowd the legend.
    axes.set_axis_off()
    handles = [
        axes.bar(0, 0, color=colour, label=label)
        for colour, label in zip(STAGE_COLOURS, (_(label) for label in STAGE_LABELS), strict=True)
    ]
    axes.legend(
        handles=handles,
        fontsize=FONT - 4,
        ncol=4,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
        handlelength=1,
        columnspacing=1,
    )


def _day_series(chart: ChainChart) -> list[tuple[str, list[int]]]:
    """The steps with orders, the busiest named, the rest added up as "other steps"."""
    with_orders = [
        (position, counts)
        for position, counts in sorted(chart.orders_per_day.items())
        if any(counts)
    ]
    ranked = sorted(with_orders, key=lambda item: -sum(item[1]))
    # "Other steps" only when it stands for two or more.
    cut = DAY_SERIES_NAMED if len(ranked) > DAY_SERIES_NAMED + 1 else len(ranked)
    named, rest = ranked[:cut], [counts for _position, counts in ranked[cut:]]
    series = [
        (_("step {position}").format(position=position), counts)
        for position, counts in sorted(named)
    ]
    if rest:
        series.append((_("other steps"), [sum(day) for day in zip(*rest, strict=True)]))
    return series


def _draw_days(axes: Axes, chart: ChainChart) -> None:
    days = len(chart.day_labels)
    title = ngettext("Orders per day, last {count} day", "Orders per day, last {count} days", days)
    axes.set_title(title.format(count=days), fontsize=FONT, loc="left")
    positions = list(range(days))
    bottom = [0] * days
    for (label, counts), colour in zip(_day_series(chart), SERIES_COLOURS, strict=False):
        axes.bar(positions, counts, bottom=bottom, color=colour, label=label, width=0.8)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    if not any(bottom):
        axes.text(
            0.5, 0.5, _("no orders yet"), transform=axes.transAxes, ha="center", fontsize=FONT
        )
    else:
        axes.legend(fontsize=FONT - 4, frameon=False, loc="upper left", ncol=3)
    # Every other day labelled: 14 dates side by side would not fit at this size.
    axes.set_xticks(positions[::2], chart.day_labels[::2], fontsize=FONT - 4)
    axes.tick_params(axis="y", labelsize=FONT - 4)
    axes.yaxis.get_major_locator().set_params(integer=True)
    # Headroom for the legend above the highest bar.
    axes.set_ylim(0, max(max(bottom, default=0) * 1.45, 1))
    for spine in ("top", "right"):
        axes.spines[spine].set_visible(False)


def _draw_holdout(axes: Axes, holdout: HoldoutStats) -> None:
    """The two groups' conversion rates with their 95 % (Wilson) intervals, and the lift
    or why it is not shown yet."""
    title = ngettext(
        "Holdout {percent}: ordered within {count} day of the main step",
        "Holdout {percent}: ordered within {count} days of the main step",
        holdout.window_days,
    )
    axes.set_title(
        title.format(percent=percent(holdout.percent / 100, 0), count=holdout.window_days),
        fontsize=FONT,
        loc="left",
    )
    groups = (
        (_("treated"), holdout.treated),
        (_("held out"), holdout.held_out),
    )
    rates = [group.conversion_rate for _label, group in groups]
    highest = 0.0
    for row, ((label, group), colour) in enumerate(zip(groups, HOLDOUT_COLOURS, strict=True)):
        axes.barh(row, group.conversion_rate, height=0.5, color=colour)
        if group.customers:
            low, high = wilson_interval(group.converted, group.customers)
            axes.errorbar(
                group.conversion_rate,
                row,
                xerr=[[group.conversion_rate - low], [high - group.conversion_rate]],
                color="#252525",
                capsize=8,
            )
            highest = max(highest, high)
        axes.text(
            0,
            row - 0.3,
            f"{label} {group.customers}: {percent(group.conversion_rate)}",
            fontsize=FONT - 4,
            va="bottom",
        )
    found = holdout.lift
    if found is None or not holdout.enough_data:
        verdict = _("lift: not enough data yet")
    else:
        low, high = found.ci95
        verdict = _("lift {delta} (95% CI {low} to {high})").format(
            delta=texts.points(found.conversion_rate_delta),
            low=texts.points(low),
            high=texts.points(high),
        )
    axes.text(0, 1.75, verdict, fontsize=FONT - 4, va="center", parse_math=False)
    axes.set_ylim(2.1, -0.6)
    axes.set_xlim(0, max(highest, *rates, 0.01) * 1.1)
    axes.xaxis.set_major_formatter(lambda value, _position: percent(value, 1))
    axes.tick_params(axis="x", labelsize=FONT - 4)
    axes.set_yticks([])
    for spine in ("top", "right", "left"):
        axes.spines[spine].set_visible(False)
