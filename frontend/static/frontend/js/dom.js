// Small DOM and formatting helpers. Every piece of data becomes a text node.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  el.append(...flatten(children));
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  el.append(...flatten(children));
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
    }
  }
}

function flatten(children) {
  return children
    .flat(Infinity)
    .filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child))));
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function humanize(value) {
  const text = String(value ?? "").replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export const CHANNEL_LABELS = { email: "Email", telegram: "Telegram", in_app: "In-app" };

export function channelTag(channel) {
  return h("span", { class: `channel channel-${channel}` }, CHANNEL_LABELS[channel] ?? humanize(channel));
}

export function badge(status) {
  return h("span", { class: "badge", "data-status": status }, humanize(status));
}

export function arrow() {
  return [h("span", { class: "arrow", "aria-hidden": "true" }, "→"), h("span", { class: "visually-hidden" }, " to ")];
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const shortTimeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function format(formatter, iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "—" : formatter.format(date);
}

export const formatTime = (iso) => format(timeFormat, iso);
export const formatShortTime = (iso) => format(shortTimeFormat, iso);
export const formatFull = (iso) => format(fullFormat, iso);

// Today's times as a time of day; older ones with their date.
export function formatDateTime(iso) {
  const today = iso && new Date(iso).toDateString() === new Date().toDateString();
  return format(today ? shortTimeFormat : dateTimeFormat, iso);
}
export function timeEl(iso, formatter = formatDateTime) {
  return h("time", { datetime: iso || null, title: iso ? formatFull(iso) : null }, formatter(iso));
}

export function formatMoney(amount, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(amount));
  } catch {
    return `${amount} ${currency}`;
  }
}

// Microseconds since the epoch, so timestamps in either of the API's ISO forms compare.
export function timeKey(iso) {
  if (!iso) return -Infinity;
  const fraction = /\.(\d+)/.exec(iso)?.[1] ?? "";
  const micros = Number(fraction.padEnd(6, "0").slice(3, 6));
  return Date.parse(iso) * 1000 + micros;
}

// An API error as a message and, for invalid input, one line per field.
export function showError(container, error, labels = {}) {
  container.replaceChildren();
  if (!error) {
    container.hidden = true;
    return;
  }
  container.append(h("p", {}, error.message));
  const fields = Object.entries(error.fields ?? {});
  if (fields.length) {
    container.append(
      h(
        "ul",
        {},
        fields.map(([name, messages]) => {
          const label = labels[name] ?? humanize(name);
          return h("li", {}, label && name !== "non_field_errors" ? `${label}: ` : "", messages.join(" "));
        }),
      ),
    );
  }
  container.hidden = false;
}
