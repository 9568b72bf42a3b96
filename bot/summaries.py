"""Sending the daily summaries (SPEC §4) from a worker, through the Telegram Bot API.

The worker's clock calls `SummarySender.send_due` every tick; the database says
which chat is due and which worker sends it (`models.summaries`). Here the summary
is composed (texts of `handlers.texts`, charts of `handlers.charts`) in the chat's
language (its subscriber's) and sent as photos and messages, each one only while
this worker still holds the claim. Hold notices go to each person in theirs
(models/bot_users.py).
docs/reporting.md tells the design.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, Defaults, ExtBot

from bot.settings import Settings
from bot.telegram_app import RATE_LIMIT_RETRIES, file_url_for
from handlers import texts
from handlers.charts import chain_chart_png
from i18n import SOURCE_LANGUAGE, use_language
from models import summaries
from models.admins import list_people, role_of
from models.bot_users import spoken_languages
from models.db import Database
from models.holds import claim_untold_holds
from models.stats import daily_stats
from models.summaries import Claim, DueSummary
from models.team_chats import unsubscribe_chat

log = logging.getLogger(__name__)
ENGINE_ACTOR = "engine"
# What Telegram says when a chat is gone for good; the chat is then unsubscribed.
GONE = ("chat not found", "bot was kicked", "bot is not a member", "user is deactivated")


@dataclass(frozen=True)
class Photo:
    png: bytes
    caption: str


# A summary is a list of parts, each one Telegram message: a photo or a text.
Part = Photo | str


def telegram_bot(settings: Settings) -> ExtBot[None]:
    """A Bot for sending from a worker, pointed where the bot process points (SPEC §6)."""
    return ExtBot(
        settings.telegram_bot_token,
        base_url=settings.telegram_api_base_url,
        base_file_url=file_url_for(settings.telegram_api_base_url),
        defaults=Defaults(
            parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)
        ),
        # Telegram allows 20 messages a minute in a group: a long summary waits, not fails.
        rate_limiter=AIORateLimiter(max_retries=RATE_LIMIT_RETRIES),
    )


async def compose_summary(
    db: Database, day: date, zone: str, *, at: time, currency: str
) -> list[Part]:
    """The summary of local `day`, due at `at` (SUMMARY_TIME): the 24 hours up to that
    moment against the 24 hours before, totals up to it, for the chains that ran in the
    REPORTED_DAYS before it; amounts in `currency`. Nothing when no chain ran.

    Cut at the summary's moment, not at the moment of composing: a summary sent late,
    or resumed after a crash, reads as it would have on time.
    """
    before, start = summaries.summary_period(day - timedelta(days=1), zone, at)
    end = summaries.summary_moment(day, zone, at)
    # The chart's last day: the one the period ends in (yesterday for SUMMARY_TIME=00:00).
    last_day = (end - timedelta(microseconds=1)).astimezone(ZoneInfo(zone)).date()
    parts: list[Part] = []
    header: str | None = texts.summary_header(day, zone, start, end)
    for chain in await summaries.reported_chains(db, end - timedelta(days=summaries.REPORTED_DAYS)):
        numbers = await daily_stats(
            db, chain.id, day_before_start=before, day_start=start, day_end=end
        )
        png = await chain_chart_png(db, numbers.total, last_day=last_day, zone=zone, until=end)
        if png is not None:
            parts.append(Photo(png, texts.chart_caption(chain.name)))
        parts += texts.summary_messages(numbers, header, currency=currency)
        header = None
    return parts


def summary_sender(settings: Settings, db: Database) -> SummarySender | None:
    """The worker's sender, or None (logged once) when there is no bot to send with."""
    if not settings.telegram_bot_token:
        log.info("TELEGRAM_BOT_TOKEN is not set: daily summaries are not sent")
        return None
    return SummarySender(
        db,
        telegram_bot(settings),
        at=settings.summary_time,
        default_timezone=settings.default_timezone,
        owner_ids=tuple(settings.admin_ids),
        currency=settings.shop_currency,
    )


class SummarySender:
    def __init__(
        self,
        db: Database,
        bot: Bot,
        *,
        at: time,
        default_timezone: str,
        owner_ids: tuple[int, ...],
        currency: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.bot = bot
        self.at = at
        self.default_timezone = default_timezone
        self.owner_ids = owner_ids
        self.currency = currency
        self.clock = clock
        # False until the Bot is initialized; None once Telegram refused the token.
        self.bot_ready: bool | None = False

    async def tick(self) -> None:
        """One check, as the worker's clock calls it: failures are logged, the next tick retries."""
        try:
            if self.bot_ready is None:
                return
            if not self.bot_ready:
                await self.bot.initialize()
                self.bot_ready = True
            await self.send_due()
            await self.tell_holds()
        except InvalidToken as exc:
            log.error("Telegram refused TELEGRAM_BOT_TOKEN (%s): daily summaries are off", exc)
            self.bot_ready = None
        except NetworkError as exc:
            log.warning("cannot reach Telegram for daily summaries (%s); trying again", exc)
        except Exception:
            log.exception("sending daily summaries failed; the next tick retries")

    async def close(self) -> None:
        if self.bot_ready:
            await self.bot.shutdown()

    async def tell_holds(self) -> int:
        """Tell the owners and admins of every chain the engine held since the last look."""
        holds = await claim_untold_holds(self.db)
        if not holds:
            return 0
        people = {*self.owner_ids}
        people.update(
            telegram_id
            for telegram_id, role, _name in await list_people(self.db)
            if role == "admin"
        )
        languages = await spoken_languages(self.db, people, SOURCE_LANGUAGE)
        for hold in holds:
            for chat_id in sorted(people):
                with use_language(languages[chat_id]):
                    notice = texts.chain_held(hold)
                try:
                    await self.bot.send_message(chat_id, notice)
                except (BadRequest, Forbidden) as exc:
                    log.warning(
                        "could not tell %d about held chain %d: %s", chat_id, hold.chain_id, exc
                    )
        return len(holds)

    async def send_due(self) -> int:
        """Send every summary due now that no other worker holds; how many were completed.

        Chats in one zone and language get the same summary of the same day: it is
        composed once.
        """
        completed = 0
        due = await summaries.due_summaries(
            self.db, self.clock(), at=self.at, default_timezone=self.default_timezone
        )
        composed: dict[tuple[date, str, str], list[Part]] = {}
        for summary in due:
            claim = await summaries.claim_summary(
                self.db, summary.chat_id, summary.day, self.clock()
            )
            if claim is not None and await self._send(summary, claim, composed):
                completed += 1
        return completed

    async def _send(
        self,
        summary: DueSummary,
        claim: Claim,
        composed: dict[tuple[date, str, str], list[Part]],
    ) -> bool:
        chat_id = summary.chat_id
        # A private chat gets summaries only while its person may use the bot.
        if chat_id > 0 and await role_of(self.db, chat_id, list(self.owner_ids)) is None:
            await self._give_up(claim, "the person may no longer use the bot")
            return False
        language = summary.language or SOURCE_LANGUAGE
        key = (summary.day, summary.timezone, language)
        if key not in composed:
            with use_language(language):
                composed[key] = await compose_summary(
                    self.db, summary.day, summary.timezone, at=self.at, currency=self.currency
                )
        parts = composed[key]
        for index in range(claim.parts_sent, len(parts)):
            if not await summaries.renew(self.db, claim, self.clock()):
                log.warning("summary for chat %s lost its claim; another worker goes on", chat_id)
                return False
            try:
                await self._send_part(chat_id, parts[index])
            except (Forbidden, BadRequest) as exc:
                if isinstance(exc, Forbidden) or any(g in exc.message.lower() for g in GONE):
                    await self._give_up(claim, f"chat gone: {exc.message}")
                else:
                    log.error("Telegram refused the summary for chat %s: %s", chat_id, exc)
                    await summaries.finish(self.db, claim, self.clock(), failed_because=exc.message)
                return False
            except (RetryAfter, NetworkError) as exc:
                log.warning("summary for chat %s failed for now (%s); retried later", chat_id, exc)
                await summaries.retry_later(self.db, claim, self.clock(), str(exc))
                return False
            except TelegramError as exc:
                log.error("summary for chat %s failed: %s", chat_id, exc)
                await summaries.finish(self.db, claim, self.clock(), failed_because=str(exc))
                return False
            await summaries.part_sent(self.db, claim, index + 1, self.clock())
        await summaries.finish(self.db, claim, self.clock())
        log.info(
            "daily summary of %s sent to chat %s (%d messages)", summary.day, chat_id, len(parts)
        )
        return True

    async def _send_part(self, chat_id: int, part: Part) -> None:
        if isinstance(part, Photo):
            await self.bot.send_photo(chat_id, part.png, caption=part.caption)
        else:
            await self.bot.send_message(chat_id, part)

    async def _give_up(self, claim: Claim, reason: str) -> None:
        """The chat cannot get summaries any more: unsubscribed, so it is not tried daily."""
        log.warning("chat %s unsubscribed from daily summaries: %s", claim.chat_id, reason)
        await summaries.finish(self.db, claim, self.clock(), failed_because=reason)
        await unsubscribe_chat(self.db, claim.chat_id, actor=ENGINE_ACTOR)
