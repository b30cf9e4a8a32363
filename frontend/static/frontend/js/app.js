// The dashboard: sign-in, the REST snapshot, and the live events that keep it current.
//
// Loading: the socket opens first, from the log's position when its ticket was issued (it joins
// its event stream before it is accepted), then the tables load over REST; events that arrive
// meanwhile wait and are applied on top of the snapshot, in order. Each event carries its
// subject's whole state, so applying every event after the position converges on the truth.
// A reconnect resumes from the last event id; resync_required reloads the tables the same way.

import { api, setToken, whenUnauthorized } from "./api.js";
import { $, h, showError } from "./dom.js";
import { createFeed } from "./feed.js";
import { createInbox } from "./inbox.js";
import { createNotificationsTable, notificationFromApi } from "./notifications.js";
import { createOrderDetail } from "./order-detail.js";
import { createOrdersTable, orderFromApi, orderFromEvent } from "./orders.js";
import { setUpSendForm } from "./send-form.js";
import { EventSocket } from "./socket.js";
import { createStats } from "./stats.js";

const TOKEN_KEY = "hub.token";
const CONNECTION_TEXT = { connected: "Connected", reconnecting: "Reconnecting", offline: "Offline" };
const FIRST_LOAD_FALLBACK_MS = 2_000;
const RELOAD_RETRY_MS = 5_000;
const SEEN_LIMIT = 10_000;

// What a signed-in session knows; signing out starts it afresh.
const signedOut = () => ({
  isStaff: false,
  loaded: false,
  loading: false,
  reloadAgain: false,
  buffer: [],
  lastEventId: null,
  seen: new Set(),
  timers: new Set(),
});

const session = { generation: 0, socketState: "offline", ...signedOut() };

window.hub = Object.freeze({
  get lastEventId() {
    return session.lastEventId;
  },
});

const isStaff = () => session.isStaff;
const orderLabel = (id) => orders.get(id)?.order_number ?? `#${id}`;

const orders = createOrdersTable({ onOpen: (id, trigger) => detail.open(id, trigger) });
const detail = createOrderDetail({ isStaff, onOrder: (order) => orders.upsert(orderFromApi(order)) });
const stats = createStats($("#stats"));
const notifications = createNotificationsTable({ isStaff, orderLabel, onTransition: stats.transition });
const feed = createFeed({ orderLabel });
const inbox = createInbox();
const sendForm = setUpSendForm({ onSent: (notification) => notifications.addIfAbsent(notification) });

const socket = new EventSocket({
  getTicket: () => api.ticket(),
  lastEventId: () => session.lastEventId,
  onPosition: (id) => {
    session.lastEventId = id;
  },
  onMessage: handleMessage,
  onOpen: () => session.loaded || reload(),
  onState: (state) => {
    session.socketState = state;
    showConnection();
  },
});

function later(callback, ms) {
  const timer = setTimeout(() => {
    session.timers.delete(timer);
    callback();
  }, ms);
  session.timers.add(timer);
}

// Connected once the socket is open and the tables hold a snapshot to keep current.
function showConnection() {
  const state = session.socketState === "connected" && !session.loaded ? "reconnecting" : session.socketState;
  const connection = $("#connection");
  connection.dataset.state = state;
  $("#connection-text").textContent = CONNECTION_TEXT[state];
}

function notice(message) {
  const box = $("#notice");
  box.replaceChildren(h("span", {}, message));
  box.hidden = !message;
}

// ---- events -----------------------------------------------------------------------

function handleMessage(message) {
  if (message.type === "resync_required") {
    reload();
    return;
  }
  if (!Number.isInteger(message.id) || session.seen.has(message.id)) return;
  session.seen.add(message.id);
  if (session.seen.size > SEEN_LIMIT) session.seen.delete(session.seen.values().next().value);
  session.lastEventId = Math.max(session.lastEventId ?? 0, message.id);
  feed.add(message);
  if (session.loading) session.buffer.push(message);
  else applyEvent(message);
}

function applyEvent({ type, data }) {
  switch (type) {
    case "order.created":
    case "order.updated":
    case "order.status_changed":
      orders.upsert(orderFromEvent(data));
      detail.changed(data.order_id);
      break;
    case "order.deleted":
      orders.remove(data.order_id);
      detail.deleted(data.order_id);
      break;
    case "customer.updated":
      orders.renameCustomer(data.customer_id, data.name);
      break;
    case "notification.created":
    case "notification.status_changed":
      notifications.applyEvent(data);
      break;
    case "inbox.message_created":
    case "inbox.message_changed":
    case "inbox.counts_changed":
      inbox.applyEvent(type, data);
      break;
  }
}

// ---- the REST snapshot ---------------------------------------------------------------

async function reload() {
  if (session.loading) {
    session.reloadAgain = true;
    return;
  }
  const generation = session.generation;
  session.loading = true;
  $("#dashboard").setAttribute("aria-busy", "true");
  try {
    const [orderPage, notificationPage, statsBody, inboxPage, inboxCounts] = await Promise.all([
      api.orders(),
      api.notifications(),
      api.stats(),
      api.inbox(),
      api.inboxCounts(),
    ]);
    if (generation !== session.generation) return;
    orders.load(orderPage.results.map(orderFromApi), orderPage.count);
    notifications.load(notificationPage.results.map(notificationFromApi), notificationPage.count);
    stats.load(statsBody);
    inbox.load(inboxPage, inboxCounts);
    session.loaded = true;
    showConnection();
    notice("");
  } catch (error) {
    if (generation !== session.generation || error.status === 401) return;
    notice(`Could not load the dashboard: ${error.message} Trying again…`);
    later(reload, RELOAD_RETRY_MS);
  } finally {
    if (generation === session.generation) {
      $("#dashboard").removeAttribute("aria-busy");
      session.loading = false;
      const buffered = session.buffer;
      session.buffer = [];
      buffered.forEach(applyEvent);
      if (session.reloadAgain) {
        session.reloadAgain = false;
        reload();
      }
    }
  }
}

// ---- signing in and out ---------------------------------------------------------------

async function begin(token) {
  setToken(token);
  const check = await api.whoAmI();
  sessionStorage.setItem(TOKEN_KEY, token);
  session.generation++;
  session.isStaff = Boolean(check.is_admin);
  $("#whoami").textContent = check.user.username;
  $("#role").hidden = !session.isStaff;
  $("#account").hidden = false;
  $("#connection").hidden = false; // the live feed's state: there is none before signing in
  $("#signin-view").hidden = true;
  $("#dashboard").hidden = false;
  socket.start();
  later(() => session.loaded || session.loading || reload(), FIRST_LOAD_FALLBACK_MS);
}

function end(message = "") {
  session.generation++;
  socket.stop();
  setToken(null);
  sessionStorage.removeItem(TOKEN_KEY);
  session.timers.forEach(clearTimeout);
  Object.assign(session, signedOut());
  detail.close({ restoreFocus: false });
  orders.clear();
  notifications.clear();
  feed.clear();
  inbox.clear();
  stats.clear();
  sendForm.reset();
  notice("");
  $("#whoami").textContent = "";
  $("#account").hidden = true;
  $("#connection").hidden = true;
  $("#dashboard").hidden = true;
  $("#signin-view").hidden = false;
  showError($("#signin-error"), message ? { message } : null);
  $("#signin").elements.username.focus();
}

whenUnauthorized(() => end("Your session has ended. Sign in again."));

$("#signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  showError($("#signin-error"), null);
  try {
    const { token } = await api.signIn(form.elements.username.value, form.elements.password.value);
    await begin(token);
    form.reset();
  } catch (error) {
    setToken(null);
    showError($("#signin-error"), error, { username: "Username", password: "Password" });
  } finally {
    button.disabled = false;
  }
});

$("#signout").addEventListener("click", async () => {
  try {
    await api.signOut();
  } catch {
    // The token is dropped here whatever the hub said.
  }
  end();
});

showConnection();
const stored = sessionStorage.getItem(TOKEN_KEY);
if (stored) {
  $("#signin-view").hidden = true;
  begin(stored).catch(() => end("Your session has ended. Sign in again."));
}
