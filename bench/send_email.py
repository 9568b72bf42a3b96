"""Email sending throughput over loopback SMTP, one variant after another.

    .venv/bin/python bench/send_email.py [--messages 20000] [--connections 8]
                                         [--only a,c] [--repeat 3]

The server is aiosmtpd in a process of its own (so it never shares the
client's event loop or CPU core), with a handler that only counts. Variants:

  a  the bare baseline: aiosmtplib over N reused connections, each message
     built in the loop as an `EmailMessage` (set_content + add_alternative,
     Cyrillic text and HTML), sent with `send_message`;
  b  the same connections sending one pre-serialised message over and over:
     the ceiling of aiosmtplib + aiosmtpd on this machine;
  c  the channel layer: `EmailComposer.compose` per message (Jinja rendering,
     tracking links, tokens, MIME) and `SmtpPool.send` with concurrency N;
  s  the same with DKIM signing (a 2048-bit RSA key, `cryptography`): compare
     with c in the same run (`--only c,s`);
  d  the whole engine: N customers and an activated chain in a fresh database
     (SQLite file by default, --engine-db postgresql for a scratch PostgreSQL
     database), then `Engine.run_until_idle()` with `SmtpPool` of concurrency N:
     claims, marking `sending`/`sent`, rendering, sending. The database is
     filled and the chain planned before the clock starts.

Each variant is an `async def variant_x(port, messages, connections)` listed
in VARIANTS (or made by a factory in PREPARED_VARIANTS, whose set-up is not
timed); the harness times it and checks the server got every message.
Results go to docs/benchmarks.md, "## Email sending".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import time as time_of_day
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric import rsa

from bench.common import MAIL_FROM, add_chain, add_customers, migrate, scratch_postgres
from channels.dkim import DkimKey
from channels.email_compose import EmailComposer, EmailStep, Recipient
from channels.sms import OutboxSmsTransport
from channels.smtp import SendStatus, SmtpPool
from models.db import Database
from scheduler.engine import Engine, EngineConfig
from services.lifecycle import activate_chain

SENDER = "Магазин «Ромашка» <news@shop.example>"
SENDER_ADDRESS = "news@shop.example"
SUBJECT = "Привет, {name}! Весенняя распродажа: скидки до 50% только до воскресенья"
TEXT = (
    "Здравствуйте, {name}!\n\n"
    "Весенняя распродажа уже началась: скидки до 50% на всё, что вы любите.\n"
    "Смотрите подборку: https://shop.example/sale?from=mail\n\n"
    "До встречи,\nкоманда магазина «Ромашка»\n"
)
HTML = (
    "<html><body>"
    "<p>Здравствуйте, <b>{name}</b>!</p>"
    "<p>Весенняя распродажа уже началась: скидки до 50% на всё, что вы любите.</p>"
    '<p><a href="https://shop.example/sale?from=mail">Смотреть подборку</a></p>'
    '<p><a href="https://shop.example/new">Новинки</a> · '
    '<a href="https://shop.example/account/{customer}">Личный кабинет</a></p>'
    "<p>До встречи,<br>команда магазина «Ромашка»</p>"
    "</body></html>"
)


def recipient_address(number: int) -> str:
    return f"customer{number}@example.com"


# ------------------------------------------------------------------ the sink


def _serve(
    port_out: multiprocessing.connection.Connection,
    count: multiprocessing.sharedctypes.Synchronized,
) -> None:  # type: ignore[type-arg]
    from aiosmtpd.smtp import SMTP, Envelope, Session

    with contextlib.suppress(ImportError):  # uvloop is optional: the faster server loop
        import uvloop

        uvloop.install()

    class Counter:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            with count.get_lock():
                count.value += 1
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = Counter()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink", loop=loop), "127.0.0.1", 0
        )
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


class SmtpSink:
    """A counting aiosmtpd server in its own process."""

    def __init__(self) -> None:
        self._count = multiprocessing.Value("q", 0)
        receiving, sending = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.Process(
            target=_serve, args=(sending, self._count), daemon=True
        )
        self._process.start()
        if not receiving.poll(30):
            raise RuntimeError("the SMTP sink did not start")
        self.port: int = receiving.recv()

    @property
    def received(self) -> int:
        return int(self._count.value)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(10)


# ---------------------------------------------------------------- variants


def build_email_message(number: int) -> EmailMessage:
    name = f"Покупатель {number}"
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = recipient_address(number)
    message["Subject"] = SUBJECT.format(name=name)
    message["Message-ID"] = f"<bench.{number}@shop.example>"
    message.set_content(TEXT.format(name=name))
    message.add_alternative(HTML.format(name=name, customer=number), subtype="html")
    return message


async def _connections(port: int, count: int) -> list[aiosmtplib.SMTP]:
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench")
        for _ in range(count)
    ]
    await asyncio.gather(*(client.connect() for client in clients))
    return clients


async def _over_connections(
    port: int,
    messages: int,
    connections: int,
    send: Callable[[aiosmtplib.SMTP, int], Awaitable[object]],
) -> None:
    clients = await _connections(port, connections)
    numbers = iter(range(messages))

    async def worker(client: aiosmtplib.SMTP) -> None:
        for number in numbers:
            await send(client, number)

    await asyncio.gather(*(worker(client) for client in clients))
    await asyncio.gather(*(client.quit() for client in clients))


async def variant_a(port: int, messages: int, connections: int) -> None:
    async def send(client: aiosmtplib.SMTP, number: int) -> object:
        return await client.send_message(build_email_message(number))

    await _over_connections(port, messages, connections, send)


async def variant_b(port: int, messages: int, connections: int) -> None:
    data = build_email_message(0).as_bytes()

    async def send(client: aiosmtplib.SMTP, number: int) -> object:
        return await client.sendmail(SENDER_ADDRESS, [recipient_address(number)], data)

    await _over_connections(port, messages, connections, send)


def bench_step() -> EmailStep:
    return EmailStep(
        chain_id=1,
        chain_name="Весенняя распродажа",
        step_id=1,
        position=1,
        campaign="spring_sale",
        utm=True,
        subject=SUBJECT.format(name="{{ first_name }}"),
        text=TEXT.format(name="{{ first_name }}"),
        html=HTML.format(name="{{ first_name }}", customer="{{ external_id }}"),
        mail_from=SENDER,
    )


async def variant_c(port: int, messages: int, connections: int) -> None:
    await _compose_and_send(port, messages, connections, None)


async def variant_s(port: int, messages: int, connections: int) -> None:
    await _compose_and_send(port, messages, connections, _bench_dkim_key())


def _bench_dkim_key() -> DkimKey:
    """A fresh 2048-bit key: the signature costs the same whatever the key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return DkimKey("shop.example", "bench", private_key)


async def _compose_and_send(
    port: int, messages: int, connections: int, dkim: DkimKey | None
) -> None:
    composer = EmailComposer(
        bench_step(),
        public_base_url="https://t.shop.example",
        secret_key="bench-secret",
        installation_id="bench",
        dkim=dkim,
    )
    pool = SmtpPool("127.0.0.1", port, concurrency=connections, local_hostname="bench")
    numbers = iter(range(messages))

    async def worker() -> None:
        for number in numbers:
            context = {"first_name": f"Покупатель {number}", "external_id": str(number)}
            composed = composer.compose(
                Recipient(number, number, recipient_address(number), context)
            )
            result = await pool.send(
                SENDER, recipient_address(number), composed.message_id, composed.data
            )
            if result.status is not SendStatus.SENT:
                raise RuntimeError(f"message {number}: {result}")

    await asyncio.gather(*(worker() for _ in range(connections)))
    await pool.aclose()


Variant = Callable[[int, int, int], Awaitable[None]]
VARIANTS: dict[str, tuple[str, Variant]] = {
    "a": ("aiosmtplib + EmailMessage built per message", variant_a),
    "b": ("aiosmtplib, one pre-serialised message (ceiling)", variant_b),
    "c": ("EmailComposer + SmtpPool", variant_c),
    "s": ("EmailComposer with DKIM signing + SmtpPool", variant_s),
}


async def _fill(url: str, messages: int) -> None:
    db = Database(url)
    try:
        await add_customers(db, messages)
        chain_id = await add_chain(db)
        await activate_chain(db, chain_id, actor="bench")
    finally:
        await db.dispose()


def _engine_variant(url: str, outbox: Path) -> Variant:
    async def variant_d(port: int, messages: int, connections: int) -> None:
        db = Database(url)
        pool = SmtpPool("127.0.0.1", port, concurrency=connections, local_hostname="bench")
        config = EngineConfig(
            mail_from=MAIL_FROM,
            public_base_url="https://t.shop.example",
            secret_key="bench-secret",
            quiet_hours_sms=(time_of_day(21), time_of_day(9)),
            email_concurrency=connections,
        )
        engine = Engine(db, config, email=pool, sms=OutboxSmsTransport(outbox, "Shop"))
        try:
            report = await engine.run_until_idle()
        finally:
            await pool.aclose()
            await db.dispose()
        if report.sent != messages:
            raise RuntimeError(f"the engine sent {report.sent} of {messages}")

    return variant_d


@contextmanager
def prepare_engine(messages: int, database: str) -> Iterator[Variant]:
    """A database with `messages` customers planned for the main step, and variant d on it."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as directory:
        if database == "postgresql":
            with scratch_postgres("bench_send") as url:
                asyncio.run(_fill(url, messages))
                yield _engine_variant(url, Path(directory))
        else:
            url = f"sqlite+aiosqlite:///{directory}/chainmail.db"
            migrate(url)
            asyncio.run(_fill(url, messages))
            yield _engine_variant(url, Path(directory))


PREPARED_VARIANTS: dict[str, str] = {
    "d": "the engine: claims, sending/sent marks, EmailComposer, SmtpPool",
}


# ------------------------------------------------------------------ harness


def run(key: str, messages: int, connections: int, engine_db: str) -> tuple[float, float]:
    """Messages per second of one variant, on a fresh sink, and the client's CPU µs a message.

    CPU time is the steadier figure on a machine other work shares.
    """
    if key in PREPARED_VARIANTS:
        with prepare_engine(messages, engine_db) as variant:
            return _timed(key, variant, messages, connections)
    return _timed(key, VARIANTS[key][1], messages, connections)


def _timed(key: str, variant: Variant, messages: int, connections: int) -> tuple[float, float]:
    sink = SmtpSink()
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        asyncio.run(variant(sink.port, messages, connections))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        deadline = time.monotonic() + 10
        while sink.received < messages and time.monotonic() < deadline:
            time.sleep(0.01)
        if sink.received != messages:
            raise RuntimeError(f"variant {key}: the server got {sink.received} of {messages}")
    finally:
        sink.stop()
    return messages / elapsed, cpu / messages * 1e6


def _build_cost_us(size: int) -> float:
    started = time.perf_counter()
    for number in range(size):
        build_email_message(number).as_bytes()
    return (time.perf_counter() - started) / size * 1e6


def _compose_cost_us(composer: EmailComposer, size: int) -> float:
    started = time.perf_counter()
    for number in range(size):
        context = {"first_name": f"Покупатель {number}", "external_id": str(number)}
        composer.compose(Recipient(number, number, recipient_address(number), context))
    return (time.perf_counter() - started) / size * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--only",
        default=",".join([*VARIANTS, *PREPARED_VARIANTS]),
        help="variants to run, e.g. a,c",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each variant, interleaved; best one counts"
    )
    parser.add_argument(
        "--engine-db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="variant d's database (postgresql: a scratch database bench_send, dropped after)",
    )
    options = parser.parse_args()

    composer, text_only = (
        EmailComposer(
            step, public_base_url="https://t.shop.example", secret_key="k", installation_id="b"
        )
        for step in (bench_step(), replace(bench_step(), html=None))
    )
    sample = Recipient(1, 1, recipient_address(1), {"first_name": "Имя", "external_id": "1"})
    size_c = len(composer.compose(sample).data)
    size_a = len(build_email_message(1).as_bytes())
    print(
        f"python {platform.python_version()}, aiosmtplib {aiosmtplib.__version__}, "
        f"{multiprocessing.cpu_count()} CPUs; {options.messages} messages, "
        f"{options.connections} connections; message size a/b {size_a} B, c {size_c} B"
    )
    print(
        f"building one message: EmailMessage + as_bytes {_build_cost_us(size=200):.0f} µs, "
        f"EmailComposer.compose {_compose_cost_us(composer, size=5000):.0f} µs, "
        f"without the step's HTML (made from the text) {_compose_cost_us(text_only, 5000):.0f} µs"
    )
    rates: dict[str, float] = {}
    for _ in range(options.repeat):
        for key in options.only.split(","):
            rate, cpu = run(key, options.messages, options.connections, options.engine_db)
            label = VARIANTS[key][0] if key in VARIANTS else PREPARED_VARIANTS[key]
            print(f"({key}) {label}: {rate:,.0f} msg/s, client CPU {cpu:.0f} µs/msg", flush=True)
            rates[key] = max(rate, rates.get(key, 0.0))
    for variant in ("c", "d"):
        if variant in rates:
            for baseline in ("a", "b"):
                if baseline in rates:
                    print(f"{variant}/{baseline} = {rates[variant] / rates[baseline]:.2f}")
    if "s" in rates and "c" in rates:
        print(f"s/c (signed / unsigned) = {rates['s'] / rates['c']:.2f}")


if __name__ == "__main__":
    main()
