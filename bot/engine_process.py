"""Wiring the engine into a process: transports from settings, APScheduler as the clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.settings import Settings
from bot.summaries import summary_sender
from bot.transports import dkim_key, email_transport, sms_transport
from models.db import Database, secret_key
from scheduler.engine import Engine, EngineConfig
from scheduler.workers import HEARTBEAT

log = logging.getLogger(__name__)
# How long a stopping worker waits for the messages it is sending.
STOP_GRACE_SECONDS = 30


@asynccontextmanager
async def engine_for(settings: Settings, db: Database) -> AsyncIterator[Engine]:
    email = email_transport(settings)
    sms = sms_transport(settings)
    log.info("email goes to %s; SMS go to %s", email.description, sms.description)
    config = EngineConfig(
        mail_from=settings.mail_from,
        public_base_url=settings.public_base_url,
        secret_key=await secret_key(db, settings.secret_key),
        dkim=dkim_key(settings),
        quiet_hours_sms=settings.quiet_hours_sms,
        email_concurrency=settings.email_concurrency,
        tick_seconds=settings.engine_tick_seconds,
        sms_opt_out_text=settings.sms_opt_out_text,
        sms_opt_outs=settings.sms_opt_outs,
        bounce_domain=settings.bounce_domain or None,
        default_language=settings.default_language,
        hold_policy=settings.hold_policy(),
        frequency_caps=settings.frequency_caps,
    )
    engine = Engine(db, config, email=email, sms=sms)
    try:
        yield engine
    finally:
        await engine.close()
        await email.aclose()
        await sms.aclose()


async def run_engine(settings: Settings, db: Database, stop: asyncio.Event) -> None:
    """Tick every ENGINE_TICK_SECONDS until `stop` is set.

    The scheduler keeps no jobs that matter in memory: a tick it misses is simply
    the next tick's work, so one tick at a time, late ones coalesced.
    """
    async with engine_for(settings, db) as engine:
        running: set[asyncio.Task[None]] = set()

        def shielded(job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            """A stop waits for the job in flight (up to STOP_GRACE_SECONDS) instead of
            cancelling it mid-send, which would leave those messages `uncertain` (or a
            heartbeat mid-write, which APScheduler would log as a failed job)."""

            async def run() -> None:
                task = asyncio.ensure_future(job())
                running.add(task)
                task.add_done_callback(running.discard)
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    # The process is ending: the job goes on under the shield and is
                    # awaited below; APScheduler need not log a cancellation.
                    return

            return run

        scheduler = AsyncIOScheduler()
        # Its own job, so that a long sending loop never delays the heartbeat.
        scheduler.add_job(
            shielded(lambda: _beat(engine)),
            "interval",
            seconds=HEARTBEAT.total_seconds(),
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            shielded(lambda: _tick_once(engine)),
            "interval",
            seconds=settings.engine_tick_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        # Its own job, so that composing a summary never delays sending messages.
        summaries = summary_sender(settings, db)
        if summaries is not None:
            scheduler.add_job(
                shielded(summaries.tick),
                "interval",
                seconds=settings.engine_tick_seconds,
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),
            )
        scheduler.start()
        try:
            await stop.wait()
        finally:
            engine.stop()
            scheduler.shutdown(wait=False)
            if running:
                _, late = await asyncio.wait(running, timeout=STOP_GRACE_SECONDS)
                if late:
                    log.warning("the engine did not finish its work in time; stopping anyway")
            if summaries is not None:
                await summaries.close()


async def _beat(engine: Engine) -> None:
    if engine.worker_id is None:
        return  # the first tick registers
    try:
        await engine.heartbeat()
    except Exception:
        log.exception("heartbeat failed; the next one retries")


async def _tick_once(engine: Engine) -> None:
    try:
        report = await engine.tick()
    except Exception:
        log.exception("engine tick failed; the next tick retries")
        return
    if report.busy:
        log.info("tick: planned %d, sent %d", report.planned, report.sent)
