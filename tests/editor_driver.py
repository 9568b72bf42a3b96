"""A manager at the chain editor: taps buttons by their labels and types, as on a phone."""

from __future__ import annotations

from telegram_double import BotEvent
from tests.test_bot_support import BotUnderTest, buttons, screen


class Phone:
    """One user's private chat with the bot; `shown` is the screen they look at."""

    def __init__(self, bot: BotUnderTest, user_id: int) -> None:
        self.bot = bot
        self.user_id = user_id
        self.shown: BotEvent | None = None
        self.events: list[BotEvent] = []

    def _took(self, events: list[BotEvent]) -> BotEvent:
        self.events = events
        # A new message is the screen; edits after it only take an old screen's buttons away.
        sent = [event for event in events if event.kind == "sent"]
        if sent:
            self.shown = sent[-1]
        elif any(event.kind == "edited" for event in events):
            self.shown = screen(events)
        assert self.shown is not None, events
        return self.shown

    @property
    def text(self) -> str:
        assert self.shown is not None
        return self.shown.text or ""

    def labels(self) -> list[str]:
        assert self.shown is not None
        return list(buttons(self.shown).values())

    def data_of(self, label: str) -> str:
        """The button whose label is `label`, or starts with it if none is exactly it."""
        assert self.shown is not None
        found = buttons(self.shown)
        exact = [data for data, text in found.items() if text == label]
        starting = [data for data, text in found.items() if text.startswith(label)]
        matches = exact or starting
        assert len(matches) == 1, f"{label!r} in {list(found.values())}"
        return matches[0]

    async def send(self, text: str) -> BotEvent:
        return self._took(await self.bot.send(self.user_id, text))

    async def tap(self, label: str) -> BotEvent:
        assert self.shown is not None
        assert self.shown.message_id is not None
        data = self.data_of(label)
        return self._took(await self.bot.press(self.user_id, self.shown.message_id, data))

    async def send_file(self, name: str, content: bytes, mime_type: str) -> BotEvent:
        return self._took(await self.bot.send_document(self.user_id, name, content, mime_type))

    def answered(self) -> list[str]:
        """The pop-up answers of the last action (toasts and alerts)."""
        return [event.text or "" for event in self.events if event.kind == "answered"]
