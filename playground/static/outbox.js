// The outbox page: emails (shown sandboxed, as a mail client would) and SMS, over /api/outbox.
// The open message is in the address (#email=<name>, #sms=<id>), so the browser's Back
// returns to the list as the page's Back button does.
"use strict";

const TEXT = {
  to: "To",
  subject: "Subject",
  sent: "Sent",
  from: "From",
};
const REFRESH_MS = 3000;
const state = {
  tab: "email",
  selected: null,
  // Whether the open message was opened from the list, so that Back is the browser's.
  fromList: false,
  loaded: false,
  data: {emails: [], sms: []},
};
const $ = (selector) => document.querySelector(selector);

function when(value) {
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return date.toLocaleString();
}

function line(label, value) {
  const row = document.createElement("div");
  const name = document.createElement("b");
  name.textContent = `${label}: `;
  row.append(name, value);
  return row;
}

// A new frame for each email: navigating the same one would add an entry to the
// browser's history, and Back would then show the previous email, not the list.
function showFrame(url) {
  const frame = $("#email").cloneNode(false);
  frame.removeAttribute("src");
  if (url) frame.src = url;
  frame.hidden = !url;
  $("#email").replaceWith(frame);
}

function showEmail(email) {
  state.selected = `email=${email.name}`;
  const headers = $("#headers");
  headers.replaceChildren(
    line(TEXT.subject, email.subject), line(TEXT.to, email.to), line(TEXT.sent, when(email.sent_at)));
  headers.hidden = false;
  showFrame(`/outbox/email/${encodeURIComponent(email.name)}`);
  document.body.classList.add("reading");
  markActive();
}

function showSms(sms) {
  state.selected = `sms=${sms.id}`;
  const headers = $("#headers");
  headers.replaceChildren(
    line(TEXT.to, sms.to), line(TEXT.from, sms.sender), line(TEXT.sent, when(sms.at)),
    document.createElement("hr"), sms.text);
  headers.hidden = false;
  showFrame(null);
  document.body.classList.add("reading");
  markActive();
}

function closeMessage() {
  state.selected = null;
  state.fromList = false;
  document.body.classList.remove("reading");
  $("#headers").hidden = true;
  showFrame(null);
  markActive();
}

// What the address names: [kind, key], or null for the list.
function addressed() {
  const match = location.hash.match(/^#(email|sms)=(.+)$/);
  if (!match) return null;
  try {
    return [match[1], decodeURIComponent(match[2])];
  } catch {
    return null;
  }
}

// Shows what the address names, once the list that holds it is loaded.
function route() {
  const wanted = addressed();
  if (!wanted) {
    if (state.selected) closeMessage();
    return;
  }
  const [kind, key] = wanted;
  if (`${kind}=${key}` === state.selected || !state.loaded) return;
  const email = kind === "email" && state.data.emails.find((e) => e.name === key);
  const sms = kind === "sms" && state.data.sms.find((s) => String(s.id) === key);
  if (email || sms) switchTab(kind);
  if (email) showEmail(email);
  else if (sms) showSms(sms);
}

function openMessage(kind, key) {
  const hash = `#${kind}=${encodeURIComponent(key)}`;
  // One history entry for reading, however many messages are opened in turn.
  if (state.selected) {
    location.replace(hash);
  } else {
    state.fromList = true;
    location.hash = hash;
  }
  route();
}

function back() {
  if (state.fromList) {
    history.back();
  } else {
    history.replaceState(null, "", location.pathname + location.search);
    closeMessage();
  }
}

function markActive() {
  for (const item of document.querySelectorAll("#items .item")) {
    item.classList.toggle("active", `${state.tab}=${item.dataset.key}` === state.selected);
  }
}

function item(key, to, subject, sent) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = "item";
  element.dataset.key = key;
  for (const [cls, value] of [["to", to], ["subject", subject], ["when", when(sent)]]) {
    const part = document.createElement("div");
    part.className = cls;
    part.textContent = value;
    element.append(part);
  }
  element.addEventListener("click", () => openMessage(state.tab, key));
  return element;
}

function renderList() {
  const items = $("#items");
  const entries = state.tab === "email"
    ? state.data.emails.map((e) => item(e.name, e.to, e.subject, e.sent_at))
    : state.data.sms.map((s) => item(s.id, s.to, s.text, s.at));
  $("#nothing").hidden = entries.length > 0;
  items.replaceChildren($("#nothing"), ...entries);
  markActive();
}

async function load() {
  const response = await fetch("/api/outbox");
  if (!response.ok) return;
  state.data = await response.json();
  $("#email-count").textContent = state.data.email_count;
  $("#sms-count").textContent = state.data.sms.length;
  state.loaded = true;
  renderList();
  route();
}

function switchTab(tab) {
  if (tab === state.tab) return;
  state.tab = tab;
  $("#tab-email").classList.toggle("active", tab === "email");
  $("#tab-sms").classList.toggle("active", tab === "sms");
  renderList();
}

$("#tab-email").addEventListener("click", () => switchTab("email"));
$("#tab-sms").addEventListener("click", () => switchTab("sms"));
$("#back").addEventListener("click", back);
window.addEventListener("hashchange", route);
load();
setInterval(load, REFRESH_MS);
