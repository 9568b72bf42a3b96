"""The message an admin watches while a step's sending wave runs (SPEC §3).

After activation, the confirmation message is edited in place with the numbers
every few seconds, then into the final tally: sent, skipped by reason, failed.
What is watched is kept in `bot_data["waves"]` (saved in the database), so a
restarted bot picks the watches up again (`resume`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from telegram.error import BadRequest, TelegramError

from handlers import ChainmailApplication, keyboards, texts
from i18n import SOURCE_LANGUAGE, current_language, set_language
from models.chains import get_chain
from models.errors import NotFound
from models.tables import ChainStatus
from services.forecast import wave_progress

log = logging.getLogger(__name__)

WAVES = "waves"
INTERVAL_SECONDS = 3.0


def watch(application: Any, *, step_id: int, chain_id: int, chat_id: int, message_id: int) -> None:
    app: ChainmailApplication = application
    key = f"{chat_id}:{message_id}"
    app.bot_data.setdefault(WAVES, {})[key] = {
        "step": step_id,
        "chain": chain_id,
        "chat": chat_id,
        "message": message_id,
        # The admin's who activated it, kept for a restarted bot's `resume`.
        "language": current_language(),
    }
    _start(app, key)


def resume(app: ChainmailApplication) -> int:
    """Start following every wave a previous run of the bot was following."""
    keys = list(app.bot_data.get(WAVES, {}))
    for key in keys:
        _start(app, key)
    return len(keys)


def _start(app: ChainmailApplication, key: str) -> None:
    if key in app.watchers and not app.watchers[key].done():
        return
    task = asyncio.create_task(_follow(app, key), name=f"wave {key}")
    app.watchers[key] = task
    task.add_done_callback(lambda done: _finished(app, key, done))


def _finished(app: ChainmailApplication, key: str, task: asyncio.Task[None]) -> None:
    if app.watchers.get(key) is task:
        del app.watchers[key]
    if not task.cancelled() and task.exception() is not None:
        log.error("following wave %s failed", key, exc_info=task.exception())


async def _follow(app: ChainmailApplication, key: str) -> None:
    wave = app.bot_data[WAVES][key]
    # This task's own context: the language stays with it.
    set_language(wave.get("language", SOURCE_LANGUAGE))
    db = app.deps.db
    shown: str | None = None
    while True:
        try:
            chain = await get_chain(db, wave["chain"])
        except NotFound:
            break
        step = next((s for s in chain.steps if s.id == wave["step"]), None)
        if step is None:
            break
        progress = await wave_progress(db, step.id, datetime.now(UTC))
        finished = not progress.running or chain.status in (
            ChainStatus.FINISHED,
            ChainStatus.ARCHIVED,
        )
        text = texts.wave_progress(
            chain.name, step.name, progress, finished, paused=chain.status is ChainStatus.PAUSED
        )
        if text != shown:
            # Once finished: where to go next, the numbers or the chain.
            markup = keyboards.wave_finished(chain.id) if finished else None
            try:
                await app.bot.edit_message_text(
                    text, wave["chat"], wave["message"], reply_markup=markup
                )
                shown = text
            except BadRequest as exc:
                if "not found" in exc.message.lower():
                    break  # the message was deleted: nobody is watching
                if "not modified" not in exc.message:
                    log.warning("could not show wave progress: %s", exc)
            except TelegramError as exc:
                log.warning("could not show wave progress: %s", exc)
        if finished:
            break
        await asyncio.sleep(INTERVAL_SECONDS)
    app.bot_data.get(WAVES, {}).pop(key, None)
    await app.update_persistence()
