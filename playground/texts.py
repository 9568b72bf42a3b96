"""What the playground says outside its static pages: the command's messages, the
roles, the demo shop's page (the chat and outbox pages' own strings are in
static/index.html and static/outbox.html, and the scripts' in TEXT at the top of each
static/*.js)."""

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

# The demo shop's page (playground/demo_shop.py; its script's words are in static/shop.js).
SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo shop · Chainmail playground</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/shop.js" defer></script>
</head><body class="shop-page" data-api-token="{api_token}">
<main class="shop">
<h1>Demo shop</h1>
{followed}
<form id="order" autocomplete="off">
  <h2>Place an order</h2>
  <p class="hint">The shop sends it to Chainmail's <code>POST /api/v1/orders</code>, as a real
    shop would. It counts in a chain's stats when the customer opened or clicked the
    chain's message before.</p>
  <label>Customer <input id="customer" name="customer" list="customers" required
    placeholder="demo-0001" value="demo-0001"></label>
  <datalist id="customers">{customers}</datalist>
  <label>Amount, RUB <input id="amount" name="amount" type="number" min="0" step="0.01"
    inputmode="decimal" required value="4200"></label>
  <button type="submit">Place the order</button>
  <p id="answer" role="status" hidden></p>
</form>
<p><a href="/">← Chat</a> · <a href="/outbox">Outbox</a></p>
</main></body></html>
"""
SHOP_FOLLOWED = """<p>You followed a link from a demo email: <code>{path}</code>.
Chainmail recorded the click before sending you here.</p>"""
