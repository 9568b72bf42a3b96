"""One bot token's Bot API: the methods a bot calls, over the state they change, and the
driver of its users: people who write, send files and press buttons, and the
inspection of what the bot did.

Every method is safe to call from any thread and any event loop. `call` serves one
Bot API request, whatever carried it (telegram_double/server.py serves HTTP).
"""

from __future__ import annotations

import base64
import copy
import inspect
import itertools
import json
import mimetypes
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from telegram_double.entities import BOT_COMMAND, user_text_entities
from telegram_double.requests import (
    MAX_DOWNLOAD_BYTES,
    MAX_TEXT_LENGTH,
    MAX_UPLOAD_BYTES,
    BotApiError,
    Params,
    Upload,
    bad_request,
    normalized,
)
from telegram_double.state import (
    STORED_FILE_FIELDS,
    BotEvent,
    CallbackQuery,
    ChangeSignal,
    Chat,
    EventKind,
    RecordedRequest,
    StoredFile,
    image_size,
)

JsonDict = dict[str, Any]

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


class DriverError(Exception):
    """The driver was asked for something a real user could not do (press a missing button, …)."""


class FakeBot:
    """The Bot API state of one bot token, and the driver of its users.

    API methods are served through `call`; everything else here is the driver:
    users acting on the bot, and inspection of what the bot did.
    """

    def __init__(self, token: str, *, username: str, first_name: str) -> None:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ValueError(f"{token!r} is not a bot token (<bot id>:<secret>)")
        self.token = token
        self.id = int(token.partition(":")[0])
        self.username = username
        self.first_name = first_name
        self._lock = threading.RLock()
        self._changes = ChangeSignal()
        self._closing = False
        # A poll still waiting learns it was superseded when this moves on.
        self._poll_generation = 0
        # Ids never repeat, even across reset(): update ids only grow, as Telegram's
        # do, so a running bot's offset stays valid, and stale ids find nothing.
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_numbers = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget everything but the bot itself: users, chats, files, updates, logs."""
        with self._lock:
            self._users: dict[int, JsonDict] = {}
            self._chats: dict[int, Chat] = {}
            self._updates: list[JsonDict] = []
            self._allowed_updates: frozenset[str] | None = None
            self._webhook_url = ""
            self._commands: dict[tuple[str, str], list[JsonDict]] = {}
            self._files: dict[str, StoredFile] = {}
            self._callback_queries: dict[str, CallbackQuery] = {}
            self._events: list[BotEvent] = []
            # wait_for looks at events after this one: the last injected or awaited.
            self._seen = 0
            self._requests: list[RecordedRequest] = []

    def snapshot(self) -> JsonDict:
        """Users, chats with their messages, and files, as JSON for `restore`.

        Pending updates, callback queries, events and the request log are left
        out: they belong to a running bot and mean nothing to the next one.
        """
        with self._lock:
            return copy.deepcopy(
                {
                    "users": list(self._users.values()),
                    "chats": [
                        {
                            "id": chat.id,
                            "type": chat.type,
                            "title": chat.title,
                            "user": chat.user,
                            "members": sorted(chat.members),
                            "messages": list(chat.messages.values()),
                            "next_message_id": chat.next_message_id,
                            "reply_keyboard": chat.reply_keyboard,
                        }
                        for chat in self._chats.values()
                    ],
                    "files": [
                        {
                            **{name: getattr(stored, name) for name in STORED_FILE_FIELDS},
                            "data": base64.b64encode(stored.data).decode(),
                        }
                        for stored in self._files.values()
                    ],
                }
            )

    def restore(self, snapshot: JsonDict) -> None:
        """Forget everything (as `reset`), then take users, chats and files from a `snapshot()`."""
        self.reset()
        with self._lock:
            self._users = {user["id"]: copy.deepcopy(user) for user in snapshot["users"]}
            for saved in snapshot["chats"]:
                chat = Chat(
                    saved["id"],
                    saved["type"],
                    title=saved["title"],
                    user=copy.deepcopy(saved["user"]),
                    members=set(saved["members"]),
                    messages={m["message_id"]: copy.deepcopy(m) for m in saved["messages"]},
                    next_message_id=saved["next_message_id"],
                    reply_keyboard=copy.deepcopy(saved["reply_keyboard"]),
                )
                self._chats[chat.id] = chat
            numbers = [0]
            for saved in snapshot["files"]:
                stored = StoredFile(
                    **{name: saved[name] for name in STORED_FILE_FIELDS},
                    data=base64.b64decode(saved["data"]),
                )
                self._files[stored.file_id] = stored
                number = re.search(r"file_(\d+)", stored.file_path)
                numbers.append(int(number[1]) if number else 0)
            # New files must not take the paths of restored ones.
            self._file_numbers = itertools.count(max(numbers) + 1)

    def as_user(self) -> JsonDict:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    # ------------------------------------------------------------- the Bot API

    async def call(
        self, method: str, values: JsonDict, uploads: dict[str, Upload] | None = None
    ) -> tuple[int, JsonDict]:
        """Serve one Bot API call: (HTTP status, response body)."""
        uploads = uploads or {}
        # Telegram matches method names without regard to case.
        name, handler = _METHODS.get(method.lower(), (method, None))
        params: JsonDict = {}
        try:
            params = {key: normalized(key, value) for key, value in values.items()}
            if handler is None:
                raise BotApiError(404, "Not Found")
            result = handler(self, Params(params, uploads))
            if inspect.isawaitable(result):
                result = await result
        except BotApiError as refusal:
            self._record(name, params, uploads, refusal.description)
            body = {
                "ok": False,
                "error_code": refusal.error_code,
                "description": refusal.description,
            }
            return refusal.error_code, body
        finally:
            self._changes.notify()
        self._record(name, params, uploads, None)
        return 200, {"ok": True, "result": result}

    def _record(
        self, method: str, params: JsonDict, uploads: dict[str, Upload], error: str | None
    ) -> None:
        files = {name: upload.filename or "" for name, upload in uploads.items()}
        with self._lock:
            self._requests.append(RecordedRequest(method, params, files, error))

    def _event(
        self, kind: EventKind, chat_id: int, message: JsonDict | None = None, **detail: Any
    ) -> None:
        with self._lock:
            self._events.append(
                BotEvent(len(self._events) + 1, kind, chat_id, copy.deepcopy(message), detail)
            )

    def _get_me(self, params: Params) -> JsonDict:
        return {
            **self.as_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: Params) -> list[JsonDict]:
        offset = params.integer("offset")
        limit = min(max(params.integer("limit", 100), 1), 100)
        timeout = max(params.integer("timeout"), 0)
        allowed = params.get("allowed_updates")
        with self._lock:
            if self._webhook_url:
                raise BotApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(map(str, allowed)) or None
            if offset < 0:
                del self._updates[: max(len(self._updates) + offset, 0)]
            elif offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._poll_generation += 1
            generation = self._poll_generation

        def ready() -> list[JsonDict] | None:
            with self._lock:
                if self._poll_generation != generation:
                    raise BotApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                if self._updates or self._closing:
                    return copy.deepcopy(self._updates[:limit])
                return None

        # A poll still waiting is superseded by this one: wake it to say so.
        self._changes.notify()
        return await self._changes.wait(ready, timeout) or []

    def _set_webhook(self, params: Params) -> bool:
        url = params.string("url")
        if url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            self._webhook_url = url
        return True

    def _delete_webhook(self, params: Params) -> bool:
        with self._lock:
            self._webhook_url = ""
            if params.flag("drop_pending_updates"):
                self._updates.clear()
        return True

    def _get_webhook_info(self, params: Params) -> JsonDict:
        with self._lock:
            return {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }

    @staticmethod
    def _commands_key(params: Params) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.string("language_code")

    def _set_my_commands(self, params: Params) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        with self._lock:
            self._commands[self._commands_key(params)] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        return True

    def _get_my_commands(self, params: Params) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: Params) -> bool:
        with self._lock:
            self._commands.pop(self._commands_key(params), None)
        return True

    def _chat(self, params: Params) -> Chat:
        """The chat the call names; a user who never opened the bot can't be written to."""
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        numeric = isinstance(chat_id, int) and not isinstance(chat_id, bool)
        chat = self._chats.get(chat_id) if numeric else None
        if chat is None:
            if numeric and chat_id in self._users:
                raise BotApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise bad_request("chat not found")
        return chat

    def _reply_target(self, params: Params, chat: Chat) -> JsonDict | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = reply.get("allow_sending_without_reply") is True
        else:
            message_id = params.integer("reply_to_message_id") or None
            allow_missing = params.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        target = chat.messages.get(message_id) if isinstance(message_id, int) else None
        if target is None and not allow_missing:
            raise bad_request("message to be replied not found")
        if target is None:
            return None
        return {key: value for key, value in target.items() if key != "reply_to_message"}

    def _store_message(self, chat: Chat, sender: JsonDict, content: JsonDict) -> JsonDict:
        message = {
            "message_id": chat.next_message_id,
            "from": sender,
            "chat": chat.as_api(),
            "date": int(time.time()),
            **content,
        }
        chat.next_message_id += 1
        chat.messages[message["message_id"]] = message
        return message

    def _send_bot_message(self, params: Params, chat: Chat, content: JsonDict) -> JsonDict:
        """Store a message from the bot with its markup and reply, and tell the watchers."""
        markup = params.markup()
        reply_to = self._reply_target(params, chat)
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        if markup is not None and "inline_keyboard" in markup:
            content["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        elif markup is not None and "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup is not None and markup.get("remove_keyboard"):
            chat.reply_keyboard = None
        message = self._store_message(chat, self.as_user(), content)
        self._event("sent", chat.id, message)
        return copy.deepcopy(message)

    def _send_message(self, params: Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            text, entities = params.formatted("text", "entities")
            if not text:
                raise bad_request("message text is empty")
            if len(text) > MAX_TEXT_LENGTH:
                raise bad_request("message is too long")
            content: JsonDict = {"text": text}
            if entities:
                content["entities"] = entities
            return self._send_bot_message(params, chat, content)

    def _store_file(self, kind: Literal["photo", "document"], upload: Upload) -> StoredFile:
        if not upload.data:
            raise bad_request("file must be non-empty")
        if len(upload.data) > MAX_UPLOAD_BYTES:
            raise BotApiError(413, "Request Entity Too Large")
        number = next(self._file_numbers)
        # Shaped like Telegram's: a long opaque id and a short one for the same file.
        file_id = ("AgAC" if kind == "photo" else "BQAC") + secrets.token_urlsafe(48)
        file_unique_id = "AQAD" + secrets.token_urlsafe(9)
        if kind == "photo":
            image = image_size(upload.data)
            if image is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            extension, width, height = image
            stored = StoredFile(
                file_id, file_unique_id, kind, f"photos/file_{number}.{extension}", upload.data,
                width=width, height=height,
            )  # fmt: skip
        else:
            name = upload.filename or "document"
            suffix = re.sub(r"[^A-Za-z0-9.]", "", name[name.rfind(".") :]) if "." in name else ""
            stored = StoredFile(
                file_id, file_unique_id, kind, f"documents/file_{number}{suffix}", upload.data,
                file_name=name, mime_type=upload.content_type or mimetypes.guess_type(name)[0],
            )  # fmt: skip
        self._files[stored.file_id] = stored
        return stored

    def _input_file(self, params: Params, kind: Literal["photo", "document"]) -> StoredFile:
        upload = params.upload(kind)
        if upload is not None:
            return self._store_file(kind, upload)
        reference = params.string(kind)
        if not reference:
            raise bad_request(f"there is no {kind} in the request")
        if reference.startswith(("http://", "https://")):
            # The double never leaves loopback, so a URL is a file it cannot get.
            raise bad_request("failed to get HTTP URL content")
        stored = self._files.get(reference)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise bad_request(f"can't use file of type {stored.kind.title()} as {kind.title()}")
        return stored

    def _send_photo(self, params: Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            photo = self._input_file(params, "photo")
            content = {"photo": [photo.as_photo_size()], **params.caption()}
            return self._send_bot_message(params, chat, content)

    def _send_document(self, params: Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            document = self._input_file(params, "document")
            content = {"document": document.as_document(), **params.caption()}
            return self._send_bot_message(params, chat, content)

    def _message_to_edit(self, params: Params) -> tuple[Chat, JsonDict]:
        if params.get("inline_message_id") is not None:
            # The double sends no inline messages, so no inline id can be valid.
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(params)
        message_id = params.integer("message_id")
        if not message_id:
            raise bad_request("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message["from"]["id"] != self.id:
            raise bad_request("message can't be edited")
        return chat, message

    def _apply_edit(self, chat: Chat, message: JsonDict, changes: JsonDict) -> JsonDict:
        """Replace `changes`' keys (None removes one), refusing an edit that changes nothing."""
        edited = {key: value for key, value in message.items() if key != "edit_date"}
        for key, value in changes.items():
            if value is None:
                edited.pop(key, None)
            else:
                edited[key] = value
        if edited == {key: value for key, value in message.items() if key != "edit_date"}:
            raise BotApiError(400, NOT_MODIFIED)
        edited["edit_date"] = int(time.time())
        chat.messages[message["message_id"]] = edited
        self._event("edited", chat.id, edited)
        return copy.deepcopy(edited)

    def _edit_message_text(self, params: Params) -> JsonDict:
        with self._lock:
            chat, message = self._message_to_edit(params)
            if "text" not in message:
                raise bad_request("there is no text in the message to edit")
            text, entities = params.formatted("text", "entities")
            if not text:
                raise bad_request("message text is empty")
            if len(text) > MAX_TEXT_LENGTH:
                raise bad_request("message is too long")
            markup = params.inline_markup()
            changes = {"text": text, "entities": entities or None, "reply_markup": markup}
            return self._apply_edit(chat, message, changes)

    def _edit_message_caption(self, params: Params) -> JsonDict:
        with self._lock:
            chat, message = self._message_to_edit(params)
            if "photo" not in message and "document" not in message:
                raise bad_request("there is no caption in the message to edit")
            caption = params.caption()
            changes = {
                "caption": caption.get("caption"),
                "caption_entities": caption.get("caption_entities"),
                "reply_markup": params.inline_markup(),
            }
            return self._apply_edit(chat, message, changes)

    def _edit_message_reply_markup(self, params: Params) -> JsonDict:
        with self._lock:
            chat, message = self._message_to_edit(params)
            return self._apply_edit(chat, message, {"reply_markup": params.inline_markup()})

    def _delete_message(self, params: Params) -> bool:
        with self._lock:
            chat = self._chat(params)
            message_id = params.integer("message_id")
            if not message_id:
                raise bad_request("message identifier is not specified")
            message = chat.messages.get(message_id)
            if message is None:
                raise bad_request("message to delete not found")
            # In a group only an admin may delete others' messages; the double's bot is none.
            if chat.type == "group" and message["from"]["id"] != self.id:
                raise bad_request("message can't be deleted")
            del chat.messages[message_id]
            self._event("deleted", chat.id, message)
        return True

    def _answer_callback_query(self, params: Params) -> bool:
        query_id = params.string("callback_query_id")
        with self._lock:
            query = self._callback_queries.get(query_id)
            if query is None or query.answered:
                raise bad_request(
                    "query is too old and response timeout expired or query ID is invalid"
                )
            query.answered = True
            self._event(
                "answered",
                query.chat_id,
                callback_query_id=query_id,
                text=params.string("text") or None,
                show_alert=params.flag("show_alert"),
                url=params.string("url") or None,
            )
        return True

    def _send_chat_action(self, params: Params) -> bool:
        with self._lock:
            chat = self._chat(params)
            action = params.string("action")
            if action not in CHAT_ACTIONS:
                raise bad_request("wrong parameter action in request")
            self._event("action", chat.id, action=action)
        return True

    def _get_chat(self, params: Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            return {
                **chat.as_api(),
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }

    def _get_file(self, params: Params) -> JsonDict:
        file_id = params.string("file_id")
        if not file_id:
            raise bad_request("file_id not specified")
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return stored.as_file()

    def download(self, file_path: str) -> bytes | None:
        """The bytes served at /file/bot<token>/<file_path>, None when there is no such file."""
        with self._lock:
            for stored in self._files.values():
                if stored.file_path == file_path:
                    return stored.data
        return None

    # ------------------------------------------------------ the driver: users act

    def user(
        self,
        user_id: int,
        first_name: str,
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = None,
        started: bool = True,
    ) -> JsonDict:
        """Define (or redefine) a user; `started`: they have opened the bot's private chat."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JsonDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        optional = {"last_name": last_name, "username": username, "language_code": language_code}
        user.update({key: value for key, value in optional.items() if value is not None})
        with self._lock:
            self._users[user_id] = user
            chat = self._chats.get(user_id)
            if chat is not None:
                chat.user = user
            elif started:
                self._chats[user_id] = Chat(user_id, "private", user=user, members={user_id})
        return copy.deepcopy(user)

    def add_to_group(self, user_id: int, group_chat_id: int, title: str) -> JsonDict:
        """Put a user in a basic group with the bot, creating the group if it is new."""
        if group_chat_id >= 0:
            raise ValueError("group chat ids are negative")
        with self._lock:
            self._known_user(user_id)
            chat = self._chats.setdefault(group_chat_id, Chat(group_chat_id, "group", title=title))
            chat.members.add(user_id)
            return chat.as_api()

    def send_text(self, user_id: int, text: str, chat_id: int | None = None) -> JsonDict:
        """The user writes `text` (in their private chat unless `chat_id`); returns the message."""
        if not text.strip():
            raise DriverError("Telegram clients do not send empty messages")
        content: JsonDict = {"text": text}
        entities = user_text_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(user_id, chat_id, content, text)

    def send_document(
        self,
        user_id: int,
        filename: str,
        content: bytes,
        mime_type: str,
        *,
        chat_id: int | None = None,
        caption: str | None = None,
    ) -> JsonDict:
        """The user sends a file; the bot can getFile and download it. Returns the message."""
        if not content:
            raise DriverError("Telegram clients do not send empty files")
        with self._lock:
            self._user_chat(user_id, chat_id)
            stored = self._store_file("document", Upload(filename, mime_type, content))
        message: JsonDict = {"document": stored.as_document()}
        if caption:
            message["caption"] = caption
            entities = user_text_entities(caption)
            if entities:
                message["caption_entities"] = entities
        return self._user_message(user_id, chat_id, message, caption or "")

    def press(
        self, user_id: int, message_id: int, callback_data: str, chat_id: int | None = None
    ) -> JsonDict:
        """The user taps the inline button with `callback_data`; returns the callback query."""
        with self._lock:
            user = self._known_user(user_id)
            chat = self._user_chat(user_id, chat_id)
            message = chat.messages.get(message_id)
            if message is None or message["from"]["id"] != self.id:
                raise DriverError(f"no bot message {message_id} in chat {chat.id}")
            buttons = [
                button
                for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
                for button in row
            ]
            if not any(button.get("callback_data") == callback_data for button in buttons):
                offered = [button.get("callback_data") for button in buttons]
                raise DriverError(
                    f"message {message_id} has no button with callback_data {callback_data!r}; "
                    f"its buttons carry {offered}"
                )
            query_id = str(self.id * 1_000_000 + next(self._callback_ids))
            self._callback_queries[query_id] = CallbackQuery(chat.id)
            self._seen = len(self._events)
            query = {
                "id": query_id,
                "from": user,
                "message": copy.deepcopy(message),
                "chat_instance": str(abs(chat.id) * 7919 + self.id),
                "data": callback_data,
            }
            self._enqueue("callback_query", query)
        self._changes.notify()
        return copy.deepcopy(query)

    def _known_user(self, user_id: int) -> JsonDict:
        user = self._users.get(user_id)
        if user is None:
            raise DriverError(f"user {user_id} is not defined; call user() first")
        return user

    def _user_chat(self, user_id: int, chat_id: int | None) -> Chat:
        """The chat a user acts in; writing to the bot opens their private chat."""
        user = self._known_user(user_id)
        if chat_id is None or chat_id == user_id:
            return self._chats.setdefault(
                user_id, Chat(user_id, "private", user=user, members={user_id})
            )
        chat = self._chats.get(chat_id)
        if chat is None or user_id not in chat.members:
            raise DriverError(f"user {user_id} is not in chat {chat_id}; add_to_group() first")
        return chat

    def _user_message(
        self, user_id: int, chat_id: int | None, content: JsonDict, text: str
    ) -> JsonDict:
        with self._lock:
            chat = self._user_chat(user_id, chat_id)
            message = self._store_message(chat, self._users[user_id], content)
            self._seen = len(self._events)
            if chat.reply_keyboard is not None and chat.reply_keyboard.get("one_time_keyboard"):
                chat.reply_keyboard = None
            if chat.type == "private" or self._addressed_to_bot(text):
                self._enqueue("message", message)
        self._changes.notify()
        return copy.deepcopy(message)

    def _addressed_to_bot(self, text: str) -> bool:
        """Privacy mode: in groups a bot gets only commands meant for it and mentions of it."""
        command = BOT_COMMAND.match(text)
        if command is not None:
            _, at, addressee = command[0].partition("@")
            return not at or addressee.lower() == self.username.lower()
        return f"@{self.username.lower()}" in text.lower()

    def _enqueue(self, update_type: str, payload: JsonDict) -> None:
        if self._allowed_updates is None or update_type in self._allowed_updates:
            self._updates.append(
                {"update_id": next(self._update_ids), update_type: copy.deepcopy(payload)}
            )

    # ------------------------------------------------ the driver: what the bot did

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API call so far, in order, with its normalized parameters."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[BotEvent]:
        with self._lock:
            return list(self._events)

    def chat_messages(self, chat_id: int) -> list[JsonDict]:
        """The chat's messages as they are now (after edits, without deleted ones)."""
        with self._lock:
            chat = self._chats.get(chat_id)
            messages = [] if chat is None else sorted(chat.messages.items())
            return [copy.deepcopy(message) for _, message in messages]

    def last_bot_message(self, chat_id: int) -> JsonDict | None:
        bot_messages = [m for m in self.chat_messages(chat_id) if m["from"]["id"] == self.id]
        return bot_messages[-1] if bot_messages else None

    def reply_keyboard(self, chat_id: int) -> JsonDict | None:
        """The reply keyboard shown in the chat (it is never part of a Message)."""
        with self._lock:
            chat = self._chats.get(chat_id)
            return copy.deepcopy(chat.reply_keyboard) if chat is not None else None

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise DriverError(f"no file {file_id!r}")
        return stored.data

    async def wait_for(
        self,
        predicate: Callable[[BotEvent], bool] | None = None,
        # A bare timeout reads best where tests call it: wait_for(predicate, 2).
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        after: int | None = None,
    ) -> BotEvent:
        """The bot's next event matching `predicate` (any event when None).

        "Next" is after the last user action injected by the driver or the last
        event returned by wait_for, whichever came later; `after` (an event
        seq) overrides that. Raises TimeoutError, listing what the bot did do.
        """
        with self._lock:
            start = self._seen if after is None else after

        def first_match() -> BotEvent | None:
            with self._lock:
                for event in self._events[start:]:
                    if predicate is None or predicate(event):
                        return event
            return None

        found = await self._changes.wait(first_match, timeout)
        if found is None:
            seen = [(e.seq, e.kind, e.chat_id, e.text) for e in self.events[start:]]
            raise TimeoutError(f"no matching bot event within {timeout}s; since #{start}: {seen}")
        with self._lock:
            self._seen = max(self._seen, found.seq)
        return found

    def _close(self, closing: bool) -> None:
        with self._lock:
            self._closing = closing
        self._changes.notify()


_Handler = Callable[[FakeBot, Params], Any]

_METHODS: dict[str, tuple[str, _Handler]] = {
    name.lower(): (name, handler)
    for name, handler in [
        ("getMe", FakeBot._get_me),
        ("getUpdates", FakeBot._get_updates),
        ("setWebhook", FakeBot._set_webhook),
        ("deleteWebhook", FakeBot._delete_webhook),
        ("getWebhookInfo", FakeBot._get_webhook_info),
        ("setMyCommands", FakeBot._set_my_commands),
        ("getMyCommands", FakeBot._get_my_commands),
        ("deleteMyCommands", FakeBot._delete_my_commands),
        ("sendMessage", FakeBot._send_message),
        ("sendPhoto", FakeBot._send_photo),
        ("sendDocument", FakeBot._send_document),
        ("editMessageText", FakeBot._edit_message_text),
        ("editMessageCaption", FakeBot._edit_message_caption),
        ("editMessageReplyMarkup", FakeBot._edit_message_reply_markup),
        ("deleteMessage", FakeBot._delete_message),
        ("answerCallbackQuery", FakeBot._answer_callback_query),
        ("sendChatAction", FakeBot._send_chat_action),
        ("getChat", FakeBot._get_chat),
        ("getFile", FakeBot._get_file),
    ]
}
