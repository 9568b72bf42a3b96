// The demo shop's order form: the order goes to Chainmail's POST /api/v1/orders with the
// shop's API token, as the shop's own systems would send it (playground/demo_shop.py).
"use strict";

const TEXT = {
  placing: "Placing the order…",
  placed: (id, amount, customer) => `Order ${id} placed: ${amount} RUB from ${customer}.`,
  duplicate: (id) => `Order ${id} was stored before: nothing changed.`,
  refused: "Refused: ",
};
const $ = (selector) => document.querySelector(selector);

function orderId() {
  const random = Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0");
  return `shop-${Date.now().toString(36)}-${random}`;
}

function answer(text, ok) {
  const box = $("#answer");
  box.textContent = text;
  box.className = ok ? "ok" : "refused";
  box.hidden = false;
}

async function placeOrder(event) {
  event.preventDefault();
  const order = {
    external_id: orderId(),
    customer_external_id: $("#customer").value.trim(),
    amount: $("#amount").value,
    currency: "RUB",
  };
  const button = $("#order button[type=submit]");
  button.disabled = true;
  answer(TEXT.placing, true);
  try {
    const response = await fetch("/api/v1/orders", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${document.body.dataset.apiToken}`,
      },
      body: JSON.stringify(order),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      answer(TEXT.refused + (typeof body.detail === "string" ? body.detail : response.statusText));
    } else if (body.errors.length) {
      answer(TEXT.refused + body.errors.map((e) => e.error).join("; "));
    } else if (body.created) {
      answer(TEXT.placed(order.external_id, order.amount, order.customer_external_id), true);
    } else {
      answer(TEXT.duplicate(order.external_id), true);
    }
  } catch (error) {
    answer(TEXT.refused + error.message);
  } finally {
    button.disabled = false;
  }
}

$("#order").addEventListener("submit", placeOrder);
