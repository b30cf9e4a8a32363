// Delivery cards and the last-hour chart. Both start from GET /notifications/stats/ and then
// follow the notifications' status changes as the table sees them.

import { $, CHANNEL_LABELS, formatShortTime, h, svg } from "./dom.js";

const MINUTE = 60_000;
// `word`: the channel in a sentence ("3 email, 1 Telegram and 0 in-app").
const CHANNELS = [
  { key: "email", label: CHANNEL_LABELS.email, word: "email" },
  { key: "telegram", label: CHANNEL_LABELS.telegram, word: "Telegram" },
  { key: "in_app", label: CHANNEL_LABELS.in_app, word: "in-app" },
];
const emptyCounts = () => Object.fromEntries(CHANNELS.map(({ key }) => [key, 0]));
const inWords = (counts) => {
  const parts = CHANNELS.map(({ key, word }) => `${counts[key]} ${word}`);
  return `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}`;
};
const IN_FLIGHT = new Set(["pending", "queued", "sending"]);

function cardKey(status) {
  if (status === "sent" || status === "failed") return status;
  return IN_FLIGHT.has(status) ? "pending" : null;
}

const floorMinute = (ms) => Math.floor(ms / MINUTE) * MINUTE;
const minuteLabel = (ms) => formatShortTime(new Date(ms).toISOString());

export function createStats(root) {
  const chart = $("#chart", root);
  const legend = $("#chart-legend", root);
  let counts = { sent: 0, failed: 0, pending: 0 };
  let buckets = [];

  // Move the window on so that it ends with `minute` (by default, this one).
  function shift(minute = floorMinute(Date.now())) {
    if (!buckets.length) return false;
    let moved = false;
    while (buckets.at(-1).minute < minute) {
      buckets.push({ minute: buckets.at(-1).minute + MINUTE, ...emptyCounts() });
      buckets.shift();
      moved = true;
    }
    return moved;
  }

  function bump(channel, sentAt, delta) {
    const minute = floorMinute(sentAt ? Date.parse(sentAt) : Date.now());
    shift(Math.max(minute, floorMinute(Date.now())));
    const bucket = buckets.find((b) => b.minute === minute);
    if (bucket && channel in bucket) bucket[channel] = Math.max(0, bucket[channel] + delta);
  }

  function renderCards() {
    for (const key of Object.keys(counts)) $(`[data-stat="${key}"]`, root).textContent = String(counts[key]);
    const finished = counts.sent + counts.failed;
    const rate = finished ? (counts.sent / finished) * 100 : null;
    $('[data-stat="success_rate"]', root).textContent = rate === null ? "—" : String(Math.round(rate * 10) / 10);
    $("#success-bar", root).style.width = `${rate ?? 0}%`;
  }

  function renderChart() {
    const width = Math.max(chart.clientWidth, 280);
    const height = 180;
    const pad = { left: 34, right: 8, top: 12, bottom: 26 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const totals = buckets.map((b) => CHANNELS.reduce((n, { key }) => n + b[key], 0));
    const peak = Math.max(...totals, 0);
    const top = Math.max(2, Math.ceil(peak / 2) * 2);
    const y = (value) => pad.top + plotH - (value / top) * plotH;
    const step = plotW / Math.max(buckets.length, 1);
    const barW = Math.max(1, step * 0.72);

    const grid = [0, top / 2, top].map((value) =>
      svg(
        "g",
        { class: "grid" },
        svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }),
        svg("text", { x: pad.left - 6, y: y(value) + 4, "text-anchor": "end" }, value),
      ),
    );
    const bars = buckets.map((bucket, i) => {
      const x = pad.left + i * step + (step - barW) / 2;
      let base = 0;
      const parts = CHANNELS.filter(({ key }) => bucket[key]).map(({ key }) => {
        const rect = svg("rect", {
          class: `bar bar-${key}`,
          x,
          width: barW,
          y: y(base + bucket[key]),
          height: y(base) - y(base + bucket[key]),
        });
        base += bucket[key];
        return rect;
      });
      const label = `${minuteLabel(bucket.minute)}: ${inWords(bucket)}`;
      return svg(
        "g",
        {},
        svg("title", {}, label),
        svg("rect", { class: "hit", x: pad.left + i * step, width: step, y: pad.top, height: plotH }),
        parts,
      );
    });
    const last = buckets.length - 1;
    const every = [10, 15, 20, 30].find((minutes) => minutes * step >= 80) ?? 30;
    const ticks = buckets
      .map((bucket, i) => ({ bucket, i }))
      .filter(({ i }) => i === last || (i % every === 0 && (last - i) * step >= 70))
      .map(({ bucket, i }) =>
        svg(
          "text",
          {
            class: "tick",
            x: pad.left + i * step + step / 2,
            y: height - 8,
            "text-anchor": i === 0 ? "start" : i === last ? "end" : "middle",
          },
          i === last ? "now" : minuteLabel(bucket.minute),
        ),
      );

    const sums = Object.fromEntries(CHANNELS.map(({ key }) => [key, buckets.reduce((n, b) => n + b[key], 0)]));
    const summary =
      `Deliveries per minute over the last hour: ${inWords(sums)}` +
      (peak ? `, at most ${peak} in one minute.` : ".");
    const middle = { x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle" };
    const empty = peak ? null : svg("text", { class: "empty", ...middle }, "No deliveries in the last hour");

    chart.replaceChildren(
      svg(
        "svg",
        { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary },
        grid,
        bars,
        ticks,
        empty,
      ),
    );
    legend.replaceChildren(
      ...CHANNELS.map(({ key, label }) =>
        h(
          "li",
          {},
          h("span", { class: `swatch swatch-${key}`, "aria-hidden": "true" }),
          `${label} `,
          h("strong", {}, sums[key]),
        ),
      ),
    );
  }

  function render() {
    renderCards();
    renderChart();
  }

  let resizeFrame = null;
  new ResizeObserver(() => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => buckets.length && renderChart());
  }).observe(chart);
  setInterval(() => shift() && renderChart(), 5_000);

  return {
    load(stats) {
      const byStatus = stats.overall.by_status;
      counts = {
        sent: byStatus.sent,
        failed: byStatus.failed,
        pending: byStatus.pending + byStatus.queued + byStatus.sending,
      };
      buckets = stats.last_hour.map((b) => ({
        minute: Date.parse(b.minute),
        ...Object.fromEntries(CHANNELS.map(({ key }) => [key, b[key] ?? 0])),
      }));
      shift();
      render();
    },

    // A notification moved from `before` to `after` (each {status, channel, sent_at}, or null).
    transition(before, after) {
      if (before?.status === after?.status) return;
      for (const [state, delta] of [
        [before, -1],
        [after, 1],
      ]) {
        if (!state) continue;
        const key = cardKey(state.status);
        if (key) counts[key] = Math.max(0, counts[key] + delta);
        if (state.status === "sent") bump(state.channel, state.sent_at, delta);
      }
      render();
    },

    clear() {
      counts = { sent: 0, failed: 0, pending: 0 };
      buckets = [];
      renderCards();
      chart.replaceChildren();
      legend.replaceChildren();
    },
  };
}
