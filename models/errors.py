"""Errors that carry a message meant for people (CLI, bot, API) rather than a traceback."""


class ChainmailError(Exception):
    """A refusal with a reason the user can act on."""


class NotFound(ChainmailError):
    pass


class SchemaOutdated(ChainmailError):
    pass


class DatabaseBusy(ChainmailError):
    """A write did not get the database within its bound: locked, or not answering."""
