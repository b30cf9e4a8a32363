// The live feed: every event as it arrives, newest first, filtered by type.

import { $, $$, arrow, badge, channelTag, formatTime, h, humanize, timeEl } from "./dom.js";
import { KIND_LABELS } from "./inbox.js";

const MAX_ITEMS = 200;

export const EVENT_LABELS = {
  "order.created": "Order placed",
  "order.updated": "Order updated",
  "order.status_changed": "Order status",
  "order.deleted": "Order deleted",
  "customer.updated": "Customer updated",
  "notification.created": "Notification",
  "notification.status_changed": "Delivery",
  "inbox.message_created": "Inbox message",
  "inbox.message_changed": "Inbox change",
  "inbox.counts_changed": "Inbox counts",
};

const muted = (text) => h("span", { class: "muted" }, text);
const fieldList = (names) => names.map(humanize).join(", ");

function describe({ type, data }, orderLabel) {
  switch (type) {
    case "order.created":
      return [h("strong", {}, data.order_number), badge(data.status), muted(data.customer_name)];
    case "order.status_changed":
      return [h("strong", {}, data.order_number), badge(data.old_status), arrow(), badge(data.new_status)];
    case "order.updated":
      return [h("strong", {}, data.order_number), muted(`changed ${fieldList(Object.keys(data.changes ?? {}))}`)];
    case "order.deleted":
      return [h("strong", {}, data.order_number), muted("deleted")];
    case "customer.updated":
      return [h("strong", {}, data.name), muted(`changed ${fieldList(data.changed ?? [])}`)];
    case "notification.created":
    case "notification.status_changed":
      return [
        channelTag(data.channel),
        data.order_id ? h("strong", {}, orderLabel(data.order_id)) : null,
        data.old_status ? [badge(data.old_status), arrow()] : null,
        badge(data.status),
        h("span", { class: "muted ellipsis" }, data.title),
        data.last_error && data.status !== "sent" ? h("span", { class: "reason" }, data.last_error) : null,
      ];
    case "inbox.message_created":
      return [h("strong", {}, data.title), muted(KIND_LABELS[data.kind] ?? humanize(data.kind))];
    case "inbox.message_changed":
      return [h("strong", {}, data.title), muted(data.archived_at ? "archived" : data.read_at ? "read" : "unread")];
    case "inbox.counts_changed": {
      const all = data.marked_all;
      return [
        muted(`${data.unread} unread, ${data.unseen} unseen`),
        all ? muted(`all marked ${all.state}${all.up_to ? ` up to #${all.up_to}` : ""}`) : null,
      ];
    }
    default:
      return [muted(type)];
  }
}

export function createFeed({ orderLabel }) {
  const list = $("#feed");
  const empty = $("#feed-empty");
  const boxes = $$('input[type=checkbox][name="feed-type"]');
  const shown = () => new Set(boxes.filter((box) => box.checked).map((box) => box.value));
  let visible = shown();

  function refreshEmpty() {
    empty.hidden = [...list.children].some((li) => !li.hidden);
    empty.textContent = list.children.length ? "No events of the selected types yet." : "Waiting for events…";
  }

  for (const box of boxes) {
    box.addEventListener("change", () => {
      visible = shown();
      for (const li of list.children) li.hidden = !visible.has(li.dataset.type);
      refreshEmpty();
    });
  }

  return {
    add(event) {
      const li = h(
        "li",
        {
          "data-event-id": event.id,
          "data-type": event.type,
          class: `feed-item kind-${event.type.split(".")[0]}`,
          hidden: !visible.has(event.type),
        },
        h(
          "div",
          { class: "feed-head" },
          h("span", { class: "feed-type" }, EVENT_LABELS[event.type] ?? event.type),
          timeEl(event.ts, formatTime),
        ),
        h("div", { class: "feed-body" }, describe(event, orderLabel)),
      );
      const before = [...list.children].find((other) => Number(other.dataset.eventId) < event.id);
      list.insertBefore(li, before ?? null);
      while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
      refreshEmpty();
    },

    clear() {
      list.replaceChildren();
      refreshEmpty();
    },
  };
}
