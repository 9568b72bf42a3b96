// The outbox page: emails (shown sandboxed, as a mail client would) and SMS, over /api/outbox.
"use strict";

const TEXT = {
  to: "To",
  subject: "Subject",
  sent: "Sent",
  from: "From",
};
const REFRESH_MS = 3000;
const state = {tab: "email", selected: null, data: {emails: [], sms: []}};
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

function showEmail(email) {
  state.selected = email.name;
  const headers = $("#headers");
  headers.replaceChildren(
    line(TEXT.subject, email.subject), line(TEXT.to, email.to), line(TEXT.sent, when(email.sent_at)));
  headers.hidden = false;
  const frame = $("#email");
  frame.hidden = false;
  frame.src = `/outbox/email/${encodeURIComponent(email.name)}`;
  markActive();
}

function showSms(sms) {
  state.selected = sms.id;
  const headers = $("#headers");
  headers.replaceChildren(
    line(TEXT.to, sms.to), line(TEXT.from, sms.sender), line(TEXT.sent, when(sms.at)),
    document.createElement("hr"), sms.text);
  headers.hidden = false;
  $("#email").hidden = true;
  markActive();
}

function markActive() {
  for (const item of document.querySelectorAll("#items .item")) {
    item.classList.toggle("active", item.dataset.key === String(state.selected));
  }
}

function item(key, to, subject, sent, onClick) {
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
  element.addEventListener("click", onClick);
  return element;
}

function renderList() {
  const items = $("#items");
  const entries = state.tab === "email"
    ? state.data.emails.map((e) => item(e.name, e.to, e.subject, e.sent_at, () => showEmail(e)))
    : state.data.sms.map((s) => item(s.id, s.to, s.text, s.at, () => showSms(s)));
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
  renderList();
}

function switchTab(tab) {
  state.tab = tab;
  $("#tab-email").classList.toggle("active", tab === "email");
  $("#tab-sms").classList.toggle("active", tab === "sms");
  renderList();
}

$("#tab-email").addEventListener("click", () => switchTab("email"));
$("#tab-sms").addEventListener("click", () => switchTab("sms"));
load();
setInterval(load, REFRESH_MS);
