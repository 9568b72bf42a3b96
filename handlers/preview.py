"""Preview and "Send test to me" of a step's message, from the chain editor (SPEC §3).

`chain_editor` calls `on_button` for the `ep:`/`et:` buttons and merges `INPUTS` into
its typed inputs. The open message block's draft is previewed (unsaved changes
included), else the saved message; rendering and sending are `services.preview`'s,
the engine's own composer. The buttons of this module, after the editor's
`<chain>:<pos>`:

| data                     | the button                                           |
|--------------------------|------------------------------------------------------|
| `ep:<chain>:<pos>`       | preview for the picked customer, else a sample one   |
| `ep:<chain>:<pos>:pick`  | wait for a customer's external id, email or phone    |
| `ep:<chain>:<pos>:sample`| forget the picked customer                           |
| `et:<chain>:<pos>`       | send a test to the admin (asks the address once)     |
| `et:<chain>:<pos>:to`    | wait for another address for the step's channel      |

State: `user_data["editor"]["preview"]` = `{"customer": id}` while one is picked (kept
across steps until the editor closes), `"chain"`/`"step"`/`"channel"` while waiting
for typed input; the admin's own addresses in `user_data["test_to"]`
(`{"email": …, "sms": …}`), kept beyond the editor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from telegram import InlineKeyboardMarkup, Update

from handlers import Context, Data, keyboards, screen, tell, texts
from handlers.callbacks import Action, int_arg
from i18n import _
from models.chainfile import SegmentsAudience, default_campaign
from models.chains import ChainView, StepView, get_chain
from models.preview import (
    BadAddress,
    PreviewCustomer,
    checked_address,
    customer_by_id,
    find_customer,
    sample_customer,
)
from models.tables import Channel
from services.preview import (
    PreviewEmail,
    RenderError,
    StepMessage,
    render_preview,
    send_test,
)

State = dict[str, Any]
Input = Callable[[Update, Context, State, str], Awaitable[None]]

EDITOR = "editor"
TEST_TO = "test_to"
PICK = "pick"
SAMPLE = "sample"
CHANGE_ADDRESS = "to"


# --- What to render, for whom --------------------------------------------------------


def _editor_state(context: Context) -> State:
    user_data: Data = context.user_data  # type: ignore[assignment]
    return user_data.setdefault(EDITOR, {})


def _preview_state(state: State) -> State:
    return state.setdefault("preview", {})


def _step_of(chain: ChainView, position: int) -> StepView | None:
    return next((step for step in chain.steps if step.position == position), None)


def _open_draft(state: State, chain_id: int, position: int) -> dict[str, Any] | None:
    if state.get("block") != "action":
        return None
    if (state.get("chain"), state.get("step")) != (chain_id, position):
        return None
    draft: dict[str, Any] | None = state.get("draft")
    return draft


async def _prepared(
    update: Update, context: Context, chain_id: int, position: int
) -> tuple[State, StepView, StepMessage, bool | None] | None:
    """The editor's state, the step, its message (the open draft, else the saved one) and
    whether it is a draft with changes (None: the saved message); None, told, when there
    is nothing to render yet."""
    state = _editor_state(context)
    state.pop("input", None)
    chain = await get_chain(context.deps.db, chain_id)
    step = _step_of(chain, position)
    draft = _open_draft(state, chain_id, position)
    action: dict[str, Any] | None = None
    changed: bool | None = None
    if draft is not None:
        action, changed = draft, draft != state.get("saved")
    elif step is not None and step.action is not None:
        action = step.action.to_block()
    if step is None or not action or not any(action.get(k) for k in ("subject", "text", "html")):
        await tell(update, _(texts.NOTHING_TO_PREVIEW))
        return None
    message = StepMessage(
        chain_id=chain.id,
        chain_name=chain.name,
        step_id=step.id,
        position=step.position,
        campaign=chain.campaign_tag,
        utm=chain.utm_enabled,
        action=action,
    )
    return state, step, message, changed


async def _customer(
    context: Context,
    state: State,
    chain_id: int,
    step: StepView,
    changed: bool | None,
    channel: str,
) -> tuple[PreviewCustomer, texts.PreviewHead, bool]:
    """The picked customer, else a sample one; the preview's heading; whether picked."""
    deps = context.deps
    customer: PreviewCustomer | None = None
    picked = _preview_state(state).get("customer")
    if picked:
        customer = await customer_by_id(
            deps.db, picked, default_language=deps.messages.default_language
        )
        if customer is None:
            _preview_state(state).pop("customer", None)
    if customer is None:
        chain = await get_chain(deps.db, chain_id)
        main = chain.steps[0].audience if chain.steps else None
        segments = main.segments if isinstance(main, SegmentsAudience) else ()
        customer = await sample_customer(
            deps.db,
            segments=segments,
            channel=channel,
            default_timezone=deps.default_timezone,
            default_language=deps.messages.default_language,
            now=datetime.now(UTC),
        )
    is_picked = not customer.made_up and customer.id == picked
    missing = None
    if not customer.made_up and not customer.contact(channel):
        missing = "email" if channel == Channel.EMAIL else "phone"
    head = texts.PreviewHead(
        position=step.position,
        step_name=step.name,
        draft_changed=changed,
        customer_name=customer.first_name,
        external_id=customer.external_id,
        made_up=customer.made_up,
        picked=is_picked,
        missing_contact=missing,
    )
    return customer, head, is_picked


# --- Screens --------------------------------------------------------------------------


def _back_button(state: State, chain_id: int, position: int) -> list[Any]:
    if _open_draft(state, chain_id, position) is not None:
        return [
            # `m`: the message block (the `eb:` row of handlers/callbacks.py).
            keyboards.button(
                _(texts.BUTTON_BACK_TO_MESSAGE), Action.EDIT_BLOCK, chain_id, position, "m"
            )
        ]
    return [keyboards.button(texts.back_to_step(position), Action.EDIT_STEP, chain_id, position)]


def _preview_keyboard(
    state: State, chain_id: int, position: int, channel: str, *, picked: bool, sent: bool = False
) -> InlineKeyboardMarkup:
    customers = [
        keyboards.button(_(texts.BUTTON_PICK_CUSTOMER), Action.PREVIEW, chain_id, position, PICK)
    ]
    if picked:
        customers.append(
            keyboards.button(
                _(texts.BUTTON_SAMPLE_CUSTOMER), Action.PREVIEW, chain_id, position, SAMPLE
            )
        )
    change = (
        _(texts.BUTTON_CHANGE_EMAIL) if channel == Channel.EMAIL else _(texts.BUTTON_CHANGE_PHONE)
    )
    tests = [keyboards.button(_(texts.BUTTON_TEST_SEND), Action.TEST_SEND, chain_id, position)]
    if sent:
        tests.insert(
            0, keyboards.button(_(texts.BUTTON_PREVIEW), Action.PREVIEW, chain_id, position)
        )
        tests.append(keyboards.button(change, Action.TEST_SEND, chain_id, position, CHANGE_ADDRESS))
    return keyboards.keyboard(customers, tests, _back_button(state, chain_id, position))


def _waiting_keyboard(state: State, chain_id: int, position: int) -> InlineKeyboardMarkup:
    return keyboards.keyboard(
        [keyboards.button(_(texts.BUTTON_BACK_TO_PREVIEW), Action.PREVIEW, chain_id, position)],
        _back_button(state, chain_id, position),
    )


def _file_name(step_name: str) -> str:
    return f"{default_campaign(step_name).replace('_', '-')}-preview.html"


async def show_preview(update: Update, context: Context, chain_id: int, position: int) -> None:
    prepared = await _prepared(update, context, chain_id, position)
    if prepared is None:
        return
    state, step, message, changed = prepared
    channel = message.channel
    customer, head, picked = await _customer(context, state, chain_id, step, changed, channel)
    markup = _preview_keyboard(state, chain_id, position, channel, picked=picked)
    try:
        rendered = await render_preview(context.deps.db, context.deps.messages, message, customer)
    except RenderError as exc:
        await screen(update, context, state, texts.render_failed(head, channel, str(exc)), markup)
        return
    if not isinstance(rendered, PreviewEmail):
        count = rendered.count
        text = texts.sms_preview(
            head, rendered.text, count.characters, count.parts, count.encoding, rendered.links
        )
        await screen(update, context, state, text, markup)
        return
    text = texts.email_preview(head, rendered.subject, rendered.text, rendered.html_from_text)
    html = rendered.html

    async def send_html() -> None:
        await context.bot.send_document(
            update.effective_chat.id,  # type: ignore[union-attr]
            document=html.encode(),
            filename=_file_name(step.name),
            caption=_(texts.HTML_PREVIEW_CAPTION),
        )

    await screen(update, context, state, text, markup, below=send_html)


async def _ask_customer(update: Update, context: Context, chain_id: int, position: int) -> None:
    state = _editor_state(context)
    _preview_state(state).update(chain=chain_id, step=position)
    state["input"] = "preview_customer"
    await screen(
        update,
        context,
        state,
        _(texts.ASK_PREVIEW_CUSTOMER),
        _waiting_keyboard(state, chain_id, position),
    )


async def _ask_address(
    update: Update,
    context: Context,
    chain_id: int,
    position: int,
    channel: str,
    problem: str | None = None,
) -> None:
    state = _editor_state(context)
    _preview_state(state).update(chain=chain_id, step=position, channel=channel)
    state["input"] = "test_to"
    await screen(
        update,
        context,
        state,
        texts.ask_test_address(channel, problem),
        _waiting_keyboard(state, chain_id, position),
    )


def _test_addresses(context: Context) -> dict[str, str]:
    user_data: Data = context.user_data  # type: ignore[assignment]
    return user_data.setdefault(TEST_TO, {})


async def send_test_to_admin(
    update: Update, context: Context, chain_id: int, position: int, *, new_address: bool = False
) -> None:
    prepared = await _prepared(update, context, chain_id, position)
    if prepared is None:
        return
    state, step, message, changed = prepared
    channel = message.channel
    to = _test_addresses(context).get(channel)
    if to is None or new_address:
        await _ask_address(update, context, chain_id, position, channel)
        return
    customer, head, picked = await _customer(context, state, chain_id, step, changed, channel)
    markup = _preview_keyboard(state, chain_id, position, channel, picked=picked, sent=True)
    # Sending may take a few seconds (an SMTP server, retries): a pressed button is
    # answered at once; typed input gets its answer as a new screen when done.
    pressed = update.callback_query is not None
    if pressed:
        shown = await screen(update, context, state, _(texts.TEST_SENDING), None)
    try:
        result = await send_test(
            context.deps.db,
            context.deps.messages,
            message,
            customer,
            to=to,
            actor=context.actor,
            chain_id=chain_id,
        )
    except RenderError as exc:
        text = texts.render_failed(head, channel, str(exc))
    else:
        text = texts.test_sent(head, channel, to, result.sent, result.detail, result.to_outbox)
    if not pressed:
        await screen(update, context, state, text, markup)
        return
    await context.bot.edit_message_text(
        text,
        update.effective_chat.id,  # type: ignore[union-attr]
        shown,
        reply_markup=markup,
    )


# --- The editor's hooks ---------------------------------------------------------------


async def on_button(update: Update, context: Context, action: Action, args: list[str]) -> None:
    chain_id, position = int_arg(args, 0), int_arg(args, 1, 1)
    op = args[2] if len(args) > 2 else ""
    if action is Action.PREVIEW and op == PICK:
        await _ask_customer(update, context, chain_id, position)
    elif action is Action.PREVIEW:
        if op == SAMPLE:
            _preview_state(_editor_state(context)).pop("customer", None)
        await show_preview(update, context, chain_id, position)
    else:
        await send_test_to_admin(
            update, context, chain_id, position, new_address=op == CHANGE_ADDRESS
        )


async def _typed_customer(update: Update, context: Context, state: State, text: str) -> None:
    waiting = _preview_state(state)
    chain_id, position = waiting.get("chain", 0), waiting.get("step", 1)
    customer = await find_customer(
        context.deps.db,
        text,
        default_phone_region=context.deps.default_phone_region,
        default_language=context.deps.messages.default_language,
    )
    if customer is None:
        await screen(
            update,
            context,
            state,
            texts.no_such_customer(text),
            _waiting_keyboard(state, chain_id, position),
        )
        return
    waiting["customer"] = customer.id
    await show_preview(update, context, chain_id, position)


async def _typed_address(update: Update, context: Context, state: State, text: str) -> None:
    waiting = _preview_state(state)
    chain_id, position = waiting.get("chain", 0), waiting.get("step", 1)
    channel = waiting.get("channel", Channel.EMAIL.value)
    try:
        address = checked_address(
            channel, text, default_phone_region=context.deps.default_phone_region
        )
    except BadAddress as exc:
        await _ask_address(update, context, chain_id, position, channel, exc.translated())
        return
    _test_addresses(context)[channel] = address
    await send_test_to_admin(update, context, chain_id, position)


INPUTS: dict[str, Input] = {
    "preview_customer": _typed_customer,
    "test_to": _typed_address,
}
