// The hub's REST API. The token lives in this module (and the tab's sessionStorage), nowhere else.

const BASE = "/api/v1/";
const PAGE_SIZE = 100;

let token = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message || (status ? `The hub answered ${status}.` : "Cannot reach the hub. Check your connection."));
    this.status = status;
    this.code = error.code ?? (status ? "http_error" : "network_error");
    this.fields = error.fields ?? null;
  }
}

export function setToken(value) {
  token = value;
}

export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

async function request(method, path, { body, params, headers = {}, auth = true } = {}) {
  const url = new URL(path.startsWith("/") ? path : BASE + path, location.origin);
  for (const [name, value] of Object.entries(params ?? {})) url.searchParams.set(name, value);
  const sentToken = auth ? token : null;
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "omit" };
  if (sentToken) init.headers.Authorization = `Token ${sentToken}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && sentToken && sentToken === token) onUnauthorized();
    throw new ApiError(response.status, data);
  }
  return data;
}

export const api = {
  signIn: (username, password) => request("POST", "auth/token/", { body: { username, password }, auth: false }),
  whoAmI: () => request("GET", "auth/token/check/"),
  signOut: () => request("POST", "auth/logout/"),
  ticket: () => request("POST", "realtime/ticket/"),
  orders: () => request("GET", "orders/", { params: { page_size: PAGE_SIZE } }),
  order: (id) => request("GET", `orders/${id}/`),
  changeOrderStatus: (id, status) => request("PUT", `orders/${id}/status/`, { body: { status } }),
  notifications: () => request("GET", "notifications/", { params: { page_size: PAGE_SIZE } }),
  sendNotification: (body, idempotencyKey) =>
    request("POST", "notifications/send/", {
      body,
      headers: idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {},
    }),
  retryNotification: (id) => request("POST", `notifications/${id}/retry/`),
  stats: () => request("GET", "notifications/stats/"),
  inbox: () => request("GET", "inbox/"),
  inboxCounts: () => request("GET", "inbox/counts/"),
  // A page the API linked to ("next"), asked of this origin whatever host the link names.
  page: (link) => {
    const { pathname, search } = new URL(link, location.origin);
    return request("GET", pathname + search);
  },
  changeInboxMessage: (id, change) => request("POST", `inbox/${id}/${change}/`),
  markInbox: (state, upTo) =>
    request("POST", state === "read" ? "inbox/read-all/" : "inbox/seen/", { body: upTo ? { up_to: upTo } : {} }),
};
