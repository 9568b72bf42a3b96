// The chat page: a small Telegram client for the demo users, over /api/chat (playground/chat.py).
"use strict";

const TEXT = {
  bot: "bot",
  group: "group · the bot sees commands and mentions only",
  edited: "edited",
  failed: "Could not do that: ",
  members: (n) => `${n} members`,
};

const state = {
  people: null,
  chat: null,        // {id, kind, title}
  seq: 0,
  boot: "",
  abort: null,
  shown: new Map(),  // message_id -> JSON of what is shown
};

const $ = (selector) => document.querySelector(selector);

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path, data) {
  return api(path, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(data),
  });
}

// ------------------------------------------------------------------ formatting

const SAFE_URL = /^(https?:|tg:)/i;

function entityElement(entity, text) {
  const tags = {
    bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code",
    pre: "pre", blockquote: "blockquote", expandable_blockquote: "blockquote",
  };
  if (tags[entity.type]) return document.createElement(tags[entity.type]);
  if (entity.type === "text_link" || entity.type === "url") {
    const url = entity.type === "url" ? text : entity.url;
    if (!SAFE_URL.test(url)) return document.createElement("span");
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    return link;
  }
  if (entity.type === "bot_command") {
    const command = document.createElement("a");
    command.href = "#";
    command.className = "command";
    command.addEventListener("click", (event) => {
      event.preventDefault();
      sendText(text);
    });
    return command;
  }
  const span = document.createElement("span");
  span.className = entity.type;
  return span;
}

// Text plus entities (offsets in UTF-16 units, as JavaScript strings count) to DOM nodes.
function formatted(text, entities) {
  const sorted = [...(entities || [])].sort(
    (a, b) => a.offset - b.offset || b.length - a.length);
  function build(start, end, list) {
    const fragment = document.createDocumentFragment();
    let position = start;
    let i = 0;
    while (i < list.length) {
      const entity = list[i];
      const entityEnd = entity.offset + entity.length;
      const inner = [];
      let j = i + 1;
      while (j < list.length && list[j].offset < entityEnd) inner.push(list[j++]);
      fragment.append(text.slice(position, entity.offset));
      const element = entityElement(entity, text.slice(entity.offset, entityEnd));
      element.append(build(entity.offset, entityEnd, inner));
      fragment.append(element);
      position = entityEnd;
      i = j;
    }
    fragment.append(text.slice(position, end));
    return fragment;
  }
  return build(0, text.length, sorted);
}

// -------------------------------------------------------------------- messages

function time(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function keyboard(message) {
  const rows = (message.reply_markup || {}).inline_keyboard || [];
  const board = document.createElement("div");
  board.className = "keyboard";
  for (const row of rows) {
    const line = document.createElement("div");
    line.className = "row";
    for (const button of row) {
      const element = document.createElement("button");
      element.type = "button";
      element.textContent = button.text;
      element.addEventListener("click", () => pressButton(message, button));
      line.append(element);
    }
    board.append(line);
  }
  return board;
}

function messageElement(message) {
  const fromBot = message.from.id === state.people.bot.id;
  const element = document.createElement("div");
  element.className = `message ${fromBot ? "from-bot" : "from-user"}`;
  element.dataset.id = message.message_id;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  if (state.chat.kind === "group" && !fromBot) {
    const sender = document.createElement("div");
    sender.className = "sender";
    sender.textContent = message.from.first_name;
    bubble.append(sender);
  }
  if (message.photo) {
    const photo = document.createElement("img");
    photo.className = "photo";
    photo.alt = message.caption || "";
    photo.src = `/api/chat/files/${encodeURIComponent(message.photo.at(-1).file_id)}`;
    photo.addEventListener("load", keepAtBottom);
    bubble.append(photo);
  }
  if (message.document) {
    const doc = message.document;
    const link = document.createElement("a");
    link.className = "document";
    link.href = `/api/chat/files/${encodeURIComponent(doc.file_id)}` +
      `?name=${encodeURIComponent(doc.file_name || "file")}`;
    link.textContent = `📄 ${doc.file_name || "file"} · ${Math.ceil(doc.file_size / 1024)} KB`;
    bubble.append(link);
  }
  const text = message.text ?? message.caption;
  if (text) {
    const body = document.createElement("div");
    body.className = "text";
    body.append(formatted(text, message.entities || message.caption_entities));
    bubble.append(body);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = (message.edit_date ? `${TEXT.edited} ` : "") + time(message.date);
  bubble.append(meta);
  element.append(bubble);
  if (message.reply_markup) element.append(keyboard(message));
  return element;
}

// A picture that loads after the list was scrolled down would push the end out of view.
function keepAtBottom(event) {
  const list = $("#messages");
  const distance = list.scrollHeight - list.scrollTop - list.clientHeight;
  if (distance < event.target.clientHeight + 80) list.scrollTop = list.scrollHeight;
}

function render(messages) {
  const list = $("#messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const wanted = new Set(messages.map((m) => m.message_id));
  for (const [id] of state.shown) {
    if (!wanted.has(id)) {
      list.querySelector(`.message[data-id="${id}"]`)?.remove();
      state.shown.delete(id);
    }
  }
  let previous = null;
  for (const message of messages) {
    const json = JSON.stringify(message);
    let element = list.querySelector(`.message[data-id="${message.message_id}"]`);
    if (state.shown.get(message.message_id) !== json) {
      const fresh = messageElement(message);
      if (element) element.replaceWith(fresh);
      else if (previous) previous.after(fresh);
      else list.prepend(fresh);
      element = fresh;
      state.shown.set(message.message_id, json);
    }
    previous = element;
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function toast(text, alert = false) {
  const box = $("#toast");
  box.textContent = text;
  box.className = alert ? "alert" : "";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, alert ? 5000 : 2500);
}

// --------------------------------------------------------------------- reading

async function refresh(wait) {
  const chat = state.chat;
  const query = `after=${state.seq}&boot=${state.boot}&wait=${wait ? 1 : 0}`;
  const controller = new AbortController();
  if (wait) state.abort = controller;
  const update = await api(`/api/chat/${chat.id}?${query}`, {signal: controller.signal});
  if (chat !== state.chat) return;
  render(update.messages);
  if (wait) {
    state.seq = update.seq;
    state.boot = update.boot;
    for (const notice of update.notices) toast(notice.text, notice.alert);
    // For those who watch the page (its tests): the last tap the bot has dealt with.
    if (update.answered.length) $("#messages").dataset.answered = update.answered.at(-1);
  }
}

async function poll() {
  const chat = state.chat;
  while (chat === state.chat) {
    try {
      await refresh(true);
    } catch (error) {
      if (error.name === "AbortError") return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

// --------------------------------------------------------------------- acting

function speaker() {
  return state.chat.kind === "group" ? Number($("#speaker").value) : state.chat.id;
}

async function act(doing) {
  try {
    await doing;
    await refresh(false);
  } catch (error) {
    toast(TEXT.failed + error.message, true);
  }
}

function sendText(text) {
  return act(post(`/api/chat/${state.chat.id}/messages`, {user_id: speaker(), text}));
}

function pressButton(message, button) {
  if (button.url) {
    window.open(button.url, "_blank", "noopener");
    return;
  }
  const pressing = post(`/api/chat/${state.chat.id}/press`, {
    user_id: speaker(), message_id: message.message_id, callback_data: button.callback_data,
  });
  act(pressing.then((query) => { $("#messages").dataset.pressed = query.id; }));
}

function sendFile(file) {
  const query = `user_id=${speaker()}&name=${encodeURIComponent(file.name)}`;
  return act(api(`/api/chat/${state.chat.id}/documents?${query}`, {
    method: "POST", headers: {"Content-Type": file.type || "text/csv"}, body: file,
  }));
}

// ----------------------------------------------------------------------- chats

// On a phone the chat list is a drawer over the chat (style.css); on a wide screen
// it is always there and the menu button is not shown.
function showMenu(open) {
  document.body.classList.toggle("menu-open", open);
  $("#scrim").hidden = !open;
  $("#menu").setAttribute("aria-expanded", String(open));
}

function openChat(chat) {
  showMenu(false);
  state.abort?.abort();
  state.chat = chat;
  state.seq = 0;
  state.shown.clear();
  $("#messages").replaceChildren();
  location.hash = `chat=${chat.id}`;
  for (const item of document.querySelectorAll("#chats button")) {
    item.classList.toggle("active", Number(item.dataset.chat) === chat.id);
  }
  const group = chat.kind === "group";
  $("#chat-title").textContent = group ? chat.title : state.people.bot.first_name;
  $("#chat-subtitle").textContent = group
    ? `${TEXT.members(state.people.users.length + 1)} · ${TEXT.group}` : TEXT.bot;
  $("#speaker-label").hidden = !group;
  poll();
}

function chatList() {
  const nav = $("#chats");
  for (const chat of state.people.chats) {
    const user = state.people.users.find((u) => u.id === chat.id);
    const item = document.createElement("button");
    item.type = "button";
    item.dataset.chat = chat.id;
    item.dataset.name = chat.title;
    const avatar = document.createElement("span");
    avatar.className = `avatar ${user ? user.key : "group"}`;
    avatar.textContent = chat.title[0];
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = chat.title;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = user ? user.role : TEXT.group.split(" ·")[0];
    const label = document.createElement("span");
    label.className = "label";
    label.append(name, role);
    item.append(avatar, label);
    item.addEventListener("click", () => openChat(chat));
    nav.append(item);
  }
  for (const user of state.people.users) {
    $("#speaker").append(new Option(`${user.name} (${user.role})`, user.id));
  }
}

async function main() {
  state.people = await api("/api/chat/people");
  chatList();
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#text");
    if (!input.value.trim()) return;
    sendText(input.value);
    input.value = "";
  });
  for (const button of document.querySelectorAll("#quick button")) {
    button.addEventListener("click", () => sendText(button.textContent));
  }
  $("#menu").addEventListener("click", () => showMenu(true));
  $("#scrim").addEventListener("click", () => showMenu(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") showMenu(false);
  });
  $("#attach").addEventListener("click", () => $("#file").click());
  $("#file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) sendFile(file);
    event.target.value = "";
  });
  const wanted = Number((location.hash.match(/chat=(-?\d+)/) || [])[1]);
  openChat(state.people.chats.find((c) => c.id === wanted) || state.people.chats[0]);
}

main();
