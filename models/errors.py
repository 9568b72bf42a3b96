"""Errors that carry a message meant for people (CLI, bot, API) rather than a traceback.

A refusal's message is English. Raised as a catalogue message with its values apart —
``ChainmailError(N_("chain {id} has no steps yet"), id=chain.id)`` — it can also be
said in the reader's language: `str(exc)` is the English the CLI and the API show,
`exc.translated()` the words of `i18n.current_language()` that the bot shows.
"""

from __future__ import annotations

from i18n import Phrase


class ChainmailError(Exception):
    """A refusal with a reason the user can act on."""

    def __init__(self, message: str | Phrase = "", /, **values: object) -> None:
        self.phrase = message if isinstance(message, Phrase) else Phrase(message, **values)
        super().__init__(str(self.phrase))

    def translated(self) -> str:
        return self.phrase.translated()


class InvalidValue(ValueError):
    """A value refused with a reason, said in the reader's language as ChainmailError's."""

    def __init__(self, message: str | Phrase, /, **values: object) -> None:
        self.phrase = message if isinstance(message, Phrase) else Phrase(message, **values)
        super().__init__(str(self.phrase))

    def translated(self) -> str:
        return self.phrase.translated()


class NotFound(ChainmailError):
    pass


class SchemaOutdated(ChainmailError):
    pass


class DatabaseBusy(ChainmailError):
    """A write did not get the database within its bound: locked, or not answering."""
