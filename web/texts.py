"""Every text the HTTP side shows to people or systems, in one place."""

BAD_API_TOKEN = "missing or wrong bearer token"
API_TOKEN_NOT_SET = "the API is disabled: set API_TOKEN to enable it"
DATABASE_UNAVAILABLE = "database unavailable"
