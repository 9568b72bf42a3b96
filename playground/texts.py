"""What the playground says outside the chat page (the page's own strings are in
static/index.html and static/outbox.html, together at the top of each)."""

from __future__ import annotations

READY = "Chainmail playground: {url}  (outbox: {url}/outbox; Ctrl+C stops it)"
DATA_DIR = "data directory: {path}"
PORT_IN_USE = "port {port} is in use: choose another with --port"

HELP = "bot, web and engine on demo data, with a Telegram chat in the browser"
HELP_PORT = "the page's port on 127.0.0.1 (default %(default)s)"
HELP_DATA_DIR = "where the database, outbox and chat history are kept (default %(default)s)"
HELP_NO_SHOP = "no simulated opens, clicks, unsubscribes or orders by the demo customers"

ROLE_NAMES = {
    "owner": "owner",
    "admin": "admin",
    "viewer": "viewer",
    "stranger": "not authorised",
}
GROUP_TITLE = "Marketing team"
STOPPING = "The playground is stopping."
FILE_TOO_BIG = "The file is over 20 MB, more than a bot may download from Telegram."

SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo shop</title>
<style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto}}</style>
</head><body><h1>Demo shop</h1>
<p>You followed a link from a demo email: <code>{path}</code>.</p>
<p>Chainmail recorded the click before sending you here. A real shop's page would
open instead.</p></body></html>
"""
