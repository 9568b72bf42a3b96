"""Use cases every door calls: the bot, the CLI, the web.

`lifecycle` activates, pauses and resumes chains; `forecast` tells what activating
will do and how a sending wave is going; `preview` renders a step's message as the
engine would and sends a test. They may import `models/`, `channels/` and
`scheduler/`; `handlers/`, `bot/` and `web/` import them.
"""
