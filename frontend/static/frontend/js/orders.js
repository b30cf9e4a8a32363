// The orders table: loaded over REST, then kept current by order.* and customer.updated events.

import { $, badge, formatMoney, h, timeEl, timeKey } from "./dom.js";
import { createRows } from "./rows.js";

export function orderFromApi(order) {
  return {
    id: order.id,
    order_number: order.order_number,
    customer_id: order.customer?.id ?? null,
    customer_name: order.customer?.name ?? "",
    total_amount: order.total_amount,
    currency: order.currency,
    status: order.status,
    tracking_number: order.tracking_number,
    updated_at: order.updated_at,
  };
}

export function orderFromEvent(data) {
  return {
    id: data.order_id,
    order_number: data.order_number,
    customer_id: data.customer_id,
    customer_name: data.customer_name,
    total_amount: data.total_amount,
    currency: data.currency,
    status: data.status,
    tracking_number: data.tracking_number,
    updated_at: data.updated_at,
  };
}

export function createOrdersTable({ onOpen }) {
  const table = $("#orders");

  const rows = createRows({
    table,
    idAttribute: "data-order-id",
    counter: $("#orders-count"),
    noun: "orders",
    renderCells: (order) => [
      h(
        "td",
        { class: "order-number", "data-label": "Order" },
        h("button", { type: "button", class: "row-link", title: "Show details and history" }, order.order_number),
      ),
      h("td", { class: "customer", "data-label": "Customer" }, order.customer_name || "—"),
      h("td", { class: "amount", "data-label": "Amount" }, formatMoney(order.total_amount, order.currency)),
      h("td", { class: "status", "data-label": "Status" }, badge(order.status)),
      h("td", { class: "tracking", "data-label": "Tracking" }, order.tracking_number || "—"),
      h("td", { class: "updated", "data-label": "Updated" }, timeEl(order.updated_at)),
    ],
  });

  table.tBodies[0].addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-order-id]");
    if (tr) onOpen(Number(tr.dataset.orderId), tr.querySelector(".row-link"));
  });

  return {
    load: rows.load,
    get: rows.get,
    remove: rows.remove,
    clear: rows.clear,

    // A newer state of an order; an older one (by updated_at) is ignored.
    upsert(order) {
      const current = rows.get(order.id);
      if (current && timeKey(order.updated_at) < timeKey(current.updated_at)) return;
      rows.upsert(order);
    },

    renameCustomer(customerId, name) {
      for (const order of rows.values()) {
        if (order.customer_id === customerId && order.customer_name !== name) {
          rows.upsert({ id: order.id, customer_name: name });
        }
      }
    },
  };
}
