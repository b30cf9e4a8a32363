// The in-app inbox: the bell in the header with the unread count, and its panel of messages,
// newest first. Loaded over REST (counts and the first page), then kept current by inbox.*
// events; counts_changed carries the truth for the badge.

import { api } from "./api.js";
import { $, h, humanize, showError, timeEl } from "./dom.js";

export const KIND_LABELS = {
  manual: "Message",
  order_created: "Order placed",
  order_status_changed: "Order status",
  email_verification: "Email verification",
  delivery_failed: "Delivery failed",
};

const hidden = (text) => h("span", { class: "visually-hidden" }, text);
const action = (change, label, title) =>
  h(
    "button",
    { type: "button", class: "btn small ghost", "data-change": change, "aria-label": `${label}: ${title}` },
    label,
  );

function renderMessage(m) {
  const unread = !m.read_at;
  return [
    h(
      "div",
      { class: "inbox-head" },
      h("span", { class: "inbox-kind" }, KIND_LABELS[m.kind] ?? humanize(m.kind)),
      timeEl(m.created_at),
    ),
    h("p", { class: "inbox-title" }, unread ? hidden("Unread: ") : null, m.title),
    m.message ? h("p", { class: "inbox-text" }, m.message) : null,
    h(
      "div",
      { class: "inbox-actions" },
      action(unread ? "read" : "unread", unread ? "Mark read" : "Mark unread", m.title),
      action("archive", "Archive", m.title),
    ),
  ];
}

export function createInbox() {
  const bell = $("#inbox-button");
  const badgeEl = $("#inbox-badge");
  const panel = $("#inbox-panel");
  const list = $("#inbox-list");
  const empty = $("#inbox-empty");
  const summary = $("#inbox-count");
  const readAll = $("#inbox-read-all");
  const more = $("#inbox-more");
  const error = $("#inbox-error");
  const held = new Map(); // id -> {message, li}
  let counts = { unseen: 0, unread: 0 };
  let countsVersion = 0; // bumped by every counts_changed, so an older answer does not undo a newer event
  let next = null;

  const newestId = () => Math.max(0, ...held.keys());
  const oldestId = () => Math.min(...held.keys());
  const isOpen = () => !panel.hidden;

  function showCounts(value) {
    counts = { unseen: value.unseen, unread: value.unread };
    badgeEl.textContent = counts.unread > 99 ? "99+" : String(counts.unread);
    badgeEl.hidden = counts.unread === 0;
    bell.setAttribute("aria-label", counts.unread ? `Inbox, ${counts.unread} unread` : "Inbox");
    summary.textContent = counts.unread ? `${counts.unread} unread` : "All read";
    refresh();
  }

  function refresh() {
    empty.hidden = held.size > 0;
    more.hidden = !next;
    readAll.disabled = counts.unread === 0 || held.size === 0;
  }

  function fill(li, message) {
    const buttons = [...li.querySelectorAll("button")];
    const focused = buttons.indexOf(document.activeElement);
    li.className = `inbox-item${message.read_at ? "" : " is-unread"}`;
    li.replaceChildren(...renderMessage(message));
    if (focused >= 0) li.querySelectorAll("button")[focused]?.focus();
  }

  function upsert(message) {
    const row = held.get(message.id);
    if (row) {
      row.message = message;
      fill(row.li, message);
      return;
    }
    const li = h("li", { "data-message-id": message.id });
    fill(li, message);
    const before = [...list.children].find((other) => Number(other.dataset.messageId) < message.id);
    list.insertBefore(li, before ?? null);
    held.set(message.id, { message, li });
  }

  function remove(id) {
    const row = held.get(id);
    if (!row) return;
    if (row.li.contains(document.activeElement)) {
      const neighbour = row.li.nextElementSibling ?? row.li.previousElementSibling;
      (neighbour?.querySelector("button") ?? $("#inbox-title")).focus();
    }
    row.li.remove();
    held.delete(id);
  }

  // A message's state as the hub now has it: archived ones leave the list. One older than the
  // pages loaded so far is left for "Load more" to bring.
  function apply(message) {
    if (message.archived_at) remove(message.id);
    else if (held.has(message.id) || !next || message.id > oldestId()) upsert(message);
    refresh();
  }

  // What one "mark all" did: every message held up to `upTo` (all if null), archived ones aside.
  function markAll({ state, up_to: upTo, at }) {
    for (const { message } of held.values()) {
      if (message.archived_at || (upTo !== null && upTo !== undefined && message.id > upTo)) continue;
      const changed = { ...message, seen_at: message.seen_at ?? at };
      if (state === "read") changed.read_at = message.read_at ?? at;
      if (changed.seen_at !== message.seen_at || changed.read_at !== message.read_at) upsert(changed);
    }
  }

  async function mark(state) {
    const upTo = newestId();
    if (!upTo) return;
    const version = countsVersion;
    showError(error, null);
    try {
      const result = await api.markInbox(state, upTo);
      // Unless a counts_changed event got here first, show the inbox as the answer left it.
      if (version === countsVersion) {
        if (result.updated) markAll({ state, up_to: upTo, at: new Date().toISOString() });
        showCounts(result);
      }
    } catch (err) {
      showError(error, err);
    }
  }

  const markSeen = () => isOpen() && counts.unseen > 0 && mark("seen");

  async function change(button, id) {
    const before = held.get(id)?.message;
    button.disabled = true;
    showError(error, null);
    try {
      const result = await api.changeInboxMessage(id, button.dataset.change);
      if (held.get(id)?.message === before) apply(result); // unless an event got here first
    } catch (err) {
      showError(error, err);
      if (held.has(id)) fill(held.get(id).li, held.get(id).message);
    }
  }

  function open() {
    panel.hidden = false;
    bell.setAttribute("aria-expanded", "true");
    $("#inbox-title").focus();
    markSeen();
  }

  function close({ restoreFocus = true } = {}) {
    if (!isOpen()) return;
    panel.hidden = true;
    bell.setAttribute("aria-expanded", "false");
    if (restoreFocus && panel.contains(document.activeElement)) bell.focus();
  }

  bell.addEventListener("click", () => (isOpen() ? close() : open()));
  $("#inbox-close").addEventListener("click", () => close());
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  document.addEventListener("click", (event) => {
    const inside = !event.target.isConnected || panel.contains(event.target) || bell.contains(event.target);
    if (isOpen() && !inside) close({ restoreFocus: false });
  });
  readAll.addEventListener("click", () => mark("read"));
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-change]");
    if (button && !button.disabled) change(button, Number(button.closest("li").dataset.messageId));
  });
  more.addEventListener("click", async () => {
    more.disabled = true;
    showError(error, null);
    try {
      const page = await api.page(next);
      // What events brought meanwhile is newer than the page: keep it.
      page.results.filter((m) => !held.has(m.id) && !m.archived_at).forEach(upsert);
      next = page.next;
    } catch (err) {
      showError(error, err);
    } finally {
      more.disabled = false;
      refresh();
    }
  });

  return {
    close,

    load(page, value) {
      list.replaceChildren();
      held.clear();
      page.results.forEach(upsert);
      next = page.next;
      showCounts(value);
      markSeen();
    },

    applyEvent(type, data) {
      if (type === "inbox.counts_changed") {
        countsVersion++;
        if (data.marked_all) markAll(data.marked_all);
        showCounts(data);
        markSeen(); // a message came while the panel is open: it is in front of the reader
      } else {
        apply(data);
      }
    },

    clear() {
      close({ restoreFocus: false });
      this.load({ results: [], next: null }, { unseen: 0, unread: 0 });
      countsVersion = 0;
      showError(error, null);
    },
  };
}
