// The notifications table: loaded over REST, then kept current by notification.* events.
// Every status change it sees is reported, so the stats can follow along.

import { $, badge, channelTag, h, showError, timeEl } from "./dom.js";
import { api } from "./api.js";
import { createRows } from "./rows.js";

export function notificationFromApi(n) {
  return {
    id: n.id,
    channel: n.channel,
    recipient: n.recipient,
    title: n.title,
    status: n.status,
    attempts: n.attempts,
    last_error: n.last_error,
    order_id: n.order,
    created_at: n.created_at,
    sent_at: n.sent_at,
  };
}

export function notificationFromEvent(data) {
  return {
    id: data.notification_id,
    channel: data.channel,
    recipient: data.recipient,
    title: data.title,
    status: data.status,
    attempts: data.attempts,
    last_error: data.last_error,
    order_id: data.order_id,
    created_at: data.created_at,
    sent_at: data.sent_at,
  };
}

const tracked = (n) => n && { status: n.status, channel: n.channel, sent_at: n.sent_at };

export function createNotificationsTable({ isStaff, orderLabel, onTransition }) {
  const error = $("#notifications-error");

  const rows = createRows({
    table: $("#notifications"),
    idAttribute: "data-notification-id",
    counter: $("#notifications-count"),
    noun: "notifications",
    renderCells: (n) => [
      h(
        "td",
        { class: "what", "data-label": "Notification" },
        h("span", { class: "title" }, n.title),
        h("span", { class: "recipient" }, n.recipient || "no recipient"),
      ),
      h("td", { "data-label": "Channel" }, channelTag(n.channel)),
      h(
        "td",
        { class: "status", "data-label": "Status" },
        badge(n.status),
        h("span", { class: "attempts" }, n.attempts === 1 ? "1 attempt" : `${n.attempts} attempts`),
        h("span", { class: `reason${n.last_error ? "" : " is-empty"}` }, n.last_error),
      ),
      h("td", { class: "order-ref", "data-label": "Order" }, n.order_id ? orderLabel(n.order_id) : "—"),
      h(
        "td",
        { class: "when", "data-label": n.sent_at ? "Sent" : "Created" },
        timeEl(n.sent_at || n.created_at),
      ),
      h(
        "td",
        { class: "actions" },
        isStaff() && n.status === "failed"
          ? h("button", { type: "button", class: "btn small retry", "data-id": n.id }, "Retry")
          : null,
      ),
    ],
  });

  function apply(item, oldStatus) {
    const before = rows.upsert(item);
    const previous = before ?? (oldStatus ? { ...item, status: oldStatus, sent_at: null } : null);
    onTransition(tracked(previous), tracked(rows.get(item.id)));
  }

  async function retry(button) {
    const id = Number(button.dataset.id);
    button.disabled = true;
    button.textContent = "Retrying…";
    showError(error, null);
    try {
      const result = await api.retryNotification(id);
      // Unless an event got here first, show the row as the API left it.
      if (rows.get(id)?.status === "failed") apply(notificationFromApi(result));
    } catch (err) {
      showError(error, err);
      rows.rerender(id);
    }
  }

  $("#notifications").tBodies[0].addEventListener("click", (event) => {
    const button = event.target.closest("button.retry");
    if (button && !button.disabled) retry(button);
  });

  return {
    load: rows.load,
    clear: rows.clear,

    applyEvent(data) {
      apply(notificationFromEvent(data), data.old_status);
    },

    // A notification just created over the API, unless its events already brought it.
    addIfAbsent(n) {
      if (!rows.get(n.id)) apply(notificationFromApi(n));
    },
  };
}
