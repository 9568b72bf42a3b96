"""The playground (`chainmail playground`, SPEC §8): the whole product in a browser.

Bot, web and engine run as in `chainmail run`, on a data directory of their own,
against the built-in Telegram double instead of Telegram; a chat page plays the
Telegram client and an outbox page shows what was "sent". docs/playground.md
tells how it is put together.
"""
