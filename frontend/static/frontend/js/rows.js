// A table body whose rows are keyed by id, newest (highest id) first, and updated in place.

import { h } from "./dom.js";

export function createRows({ table, idAttribute, renderCells, counter, noun }) {
  const tbody = table.tBodies[0];
  const emptyRow = tbody.querySelector("tr.empty-row");
  const rows = new Map(); // id -> {item, tr}
  let notLoaded = 0;

  function refreshCount() {
    emptyRow.hidden = rows.size > 0;
    const shown = rows.size;
    const total = shown + notLoaded;
    counter.textContent = total > shown ? `Latest ${shown} of ${total} ${noun}` : `${total} ${noun}`;
  }

  function fill(tr, item) {
    const hadFocus = tr.contains(document.activeElement);
    tr.replaceChildren(...renderCells(item));
    if (hadFocus) tr.querySelector("button")?.focus();
  }

  function flash(tr) {
    tr.classList.remove("flash");
    void tr.offsetWidth;
    tr.classList.add("flash");
  }

  function insert(item) {
    const tr = h("tr", { [idAttribute]: item.id });
    fill(tr, item);
    const before = [...tbody.querySelectorAll(`tr[${idAttribute}]`)].find(
      (other) => Number(other.getAttribute(idAttribute)) < item.id,
    );
    tbody.insertBefore(tr, before ?? null);
    rows.set(item.id, { item, tr });
  }

  return {
    load(items, total) {
      for (const { tr } of rows.values()) tr.remove();
      rows.clear();
      items.forEach(insert);
      notLoaded = Math.max(0, total - items.length);
      refreshCount();
    },

    get: (id) => rows.get(id)?.item,
    values: () => [...rows.values()].map((row) => row.item),

    // Adds the item or merges it into the row it has; returns the item as it was before.
    upsert(item) {
      const row = rows.get(item.id);
      if (!row) {
        insert(item);
        refreshCount();
        flash(rows.get(item.id).tr);
        return undefined;
      }
      const before = row.item;
      row.item = { ...before, ...item };
      if (Object.keys(item).some((key) => item[key] !== before[key])) {
        fill(row.tr, row.item);
        flash(row.tr);
      }
      return before;
    },

    rerender(id) {
      const row = rows.get(id);
      if (row) fill(row.tr, row.item);
    },

    remove(id) {
      const row = rows.get(id);
      if (!row) return;
      row.tr.remove();
      rows.delete(id);
      refreshCount();
    },

    clear() {
      this.load([], 0);
    },
  };
}
