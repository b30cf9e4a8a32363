// One order's details and history (GET /orders/{id}/); staff may change its status from here.

import { api } from "./api.js";
import { $, arrow, badge, formatMoney, h, humanize, showError, timeEl } from "./dom.js";

const STATUSES = ["pending", "confirmed", "processing", "shipped", "delivered", "cancelled"];
const REFRESH_DELAY_MS = 300;

function describe(entry) {
  if (entry.kind === "created") return ["Order placed", entry.to_status ? [" as ", badge(entry.to_status)] : null];
  if (entry.kind === "status_changed") {
    return ["Status ", badge(entry.from_status), arrow(), badge(entry.to_status)];
  }
  const changes = Object.entries(entry.changes ?? {});
  if (!changes.length) return ["Order updated"];
  return [
    "Updated ",
    changes.map(([field, [before, after]], i) => [
      i ? "; " : "",
      h("strong", {}, humanize(field)),
      ` ${before === "" || before === null ? "—" : before} → ${after === "" || after === null ? "—" : after}`,
    ]),
  ];
}

function historyItem(entry) {
  return h(
    "li",
    { "data-kind": entry.kind },
    h("div", { class: "timeline-what" }, describe(entry)),
    h("div", { class: "timeline-meta" }, timeEl(entry.created_at), entry.actor ? ` · by ${entry.actor}` : ""),
  );
}

function summaryRow(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

export function createOrderDetail({ isStaff, onOrder }) {
  const section = $("#order-detail");
  const title = $("#order-detail-title");
  const summary = $("#order-summary");
  const history = $("#order-history");
  const error = $("#order-detail-error");
  const note = $("#order-detail-note");
  const controls = $("#order-status-slot");
  let current = null;
  let trigger = null;
  let sequence = 0;
  let refreshTimer = null;

  function statusForm(order) {
    const select = h(
      "select",
      { name: "status", id: "order-status" },
      h(
        "optgroup",
        { label: "Allowed next" },
        order.next_statuses.map((status) => h("option", { value: status }, humanize(status))),
      ),
      h(
        "optgroup",
        { label: "Other statuses" },
        STATUSES.filter((s) => s !== order.status && !order.next_statuses.includes(s)).map((status) =>
          h("option", { value: status }, humanize(status)),
        ),
      ),
    );
    const button = h("button", { type: "submit", id: "change-status", class: "btn primary" }, "Change status");
    const form = h(
      "form",
      { class: "status-form", novalidate: true },
      h("label", { for: "order-status" }, "Change status"),
      h("div", { class: "inline-controls" }, select, button),
      order.next_statuses.length ? null : h("p", { class: "hint" }, "This order is final."),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const id = current;
      button.disabled = true;
      showError(error, null);
      note.textContent = "";
      try {
        const updated = await api.changeOrderStatus(id, select.value);
        onOrder(updated);
        if (id === current) {
          render(updated);
          note.textContent = `Status changed to ${humanize(updated.status)}.`;
        }
      } catch (err) {
        if (id === current) showError(error, err);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  function render(order) {
    title.textContent = order.order_number;
    summary.replaceChildren(
      ...summaryRow("Status", badge(order.status)),
      ...summaryRow("Customer", order.customer ? order.customer.name : "—"),
      ...summaryRow("Amount", formatMoney(order.total_amount, order.currency)),
      ...summaryRow("Tracking", order.tracking_number || "—"),
      ...summaryRow("Shipping", humanize(order.shipping_method)),
      ...summaryRow("Placed", timeEl(order.created_at)),
    );
    history.replaceChildren(...order.history.map(historyItem));
    // Keep the form, and what is picked in it, while the status stays the same.
    const formKey = `${order.id}:${order.status}`;
    if (controls.dataset.for !== formKey) {
      controls.dataset.for = formKey;
      controls.replaceChildren(isStaff() ? statusForm(order) : "");
    }
  }

  async function load(id) {
    const mine = ++sequence;
    try {
      const order = await api.order(id);
      if (mine !== sequence || id !== current) return;
      section.removeAttribute("aria-busy");
      render(order);
      onOrder(order);
    } catch (err) {
      if (mine !== sequence || id !== current) return;
      section.removeAttribute("aria-busy");
      showError(error, err.status === 404 ? { message: "This order no longer exists, or you may not see it." } : err);
    }
  }

  function close({ restoreFocus = true } = {}) {
    clearTimeout(refreshTimer);
    sequence++;
    current = null;
    section.hidden = true;
    if (restoreFocus && trigger?.isConnected) trigger.focus();
    trigger = null;
  }

  $("#order-detail-close").addEventListener("click", () => close());
  section.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });

  return {
    open(id, fromElement) {
      clearTimeout(refreshTimer);
      const changed = id !== current;
      current = id;
      trigger = fromElement ?? null;
      if (changed) {
        title.textContent = "Loading…";
        summary.replaceChildren();
        history.replaceChildren();
        controls.replaceChildren();
        delete controls.dataset.for;
        note.textContent = "";
        showError(error, null);
        section.setAttribute("aria-busy", "true");
      }
      section.hidden = false;
      const top = section.getBoundingClientRect().top;
      if (top < 64 || top > window.innerHeight * 0.5) {
        const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
        section.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
      }
      title.focus({ preventScroll: true });
      load(id);
    },

    // Something happened to an order: reload it if it is the one on show.
    changed(id) {
      if (id !== current) return;
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => load(id), REFRESH_DELAY_MS);
    },

    deleted(id) {
      if (id !== current) return;
      clearTimeout(refreshTimer);
      sequence++;
      controls.replaceChildren();
      delete controls.dataset.for;
      showError(error, { message: "This order was deleted." });
    },

    close,
  };
}
