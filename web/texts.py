"""Every text the HTTP side shows to people or systems, in one place.

The API's words are for the shop's developers: English. The pages are for the shop's
customers: in each one's language (`N_` here, translated where shown, i18n/).
"""

from i18n import N_

BAD_API_TOKEN = "missing or wrong bearer token"
API_TOKEN_NOT_SET = "the API is disabled: set API_TOKEN to enable it"
DATABASE_UNAVAILABLE = "database unavailable"
DATABASE_BUSY = "database busy: writes are waiting for a lock"

# Bodies of every endpoint (web/body.py).
BODY_TOO_LARGE = "the body is larger than {limit}"
NOT_JSON = "the body is not JSON: {reason}"
JSON_TOO_DEEP = "the body nests arrays and objects deeper than {limit} levels"
JSON_INTEGER_TOO_LONG = "the body has an integer of more than {limit} digits"

# The shop's API: customers, orders and SMS reports.
TOO_MANY_CUSTOMERS = "at most {limit} customers per request: send the rest in another one"
NOT_A_LIST_OF_CUSTOMERS = "the body must be a JSON list of customers"
TOO_MANY_ORDERS = "at most {limit} orders per request: send the rest in another one"
NOT_AN_ORDER_OR_LIST = "the body must be one order (a JSON object) or a JSON list of orders"
UNKNOWN_SMS = "no SMS with id {id!r}"
NOT_A_SEGMENT = "the body must be a JSON object: a segment's name and definition"
NO_SEGMENT = "there is no segment {name!r}"
SEGMENT_NEEDS_NAME = "a segment needs a name"

# Pages the shop's customers see after following a link in a message; shop-neutral,
# as no setting names the shop.
UNSUBSCRIBE_TITLE = N_("Unsubscribe")
UNSUBSCRIBE_QUESTION = {
    "email": N_("Do you want to stop receiving our emails?"),
    "sms": N_("Do you want to stop receiving our text messages?"),
}
UNSUBSCRIBE_BUTTON = N_("Unsubscribe")
UNSUBSCRIBED_TITLE = N_("You are unsubscribed")
UNSUBSCRIBED_DONE = {
    "email": N_("You will no longer receive our mailings by email."),
    "sms": N_("You will no longer receive our mailings by text message."),
    None: N_("You will no longer receive our mailings."),
}
LINK_NOT_FOUND_TITLE = N_("Link not found")
LINK_NOT_FOUND_BODY = N_(
    "This link is not valid. If you copied it from a message, please check that it is complete."
)
