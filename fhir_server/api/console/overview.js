// The overview: counts by status (live), jobs created / completed / failed per minute over
// the last hour, durations by type (p50/p95), the newest failures. All from searches.
import { STATUSES, collect, count, errorText, fhir, jobsUrl, serverNow } from "./api.js";
import { lineChart } from "./chart.js";
import { fill, h, seconds, statusBadge, time } from "./dom.js";
import { subscribe } from "./live.js";

const HOUR_MS = 3600 * 1000;
// At most this many pages of 1000 jobs per series: beyond, the chart says it is a sample.
const MAX_PAGES = 5;
const PAGE = "1000";

export function overview(main) {
  const counts = h("div", { class: "counts", id: "counts", "aria-live": "polite" });
  const chart = h("div", { class: "chart-box", id: "activity" }, h("p", { class: "muted" }, "Loading…"));
  const durations = h("div", { id: "durations" }, h("p", { class: "muted" }, "Loading…"));
  const failures = h("div", { id: "failures" }, h("p", { class: "muted" }, "Loading…"));
  fill(
    main,
    h("h1", { tabindex: "-1" }, "Overview"),
    h("section", { "aria-labelledby": "counts-title" }, h("h2", { id: "counts-title" }, "Jobs by status"), counts),
    h("section", { "aria-labelledby": "activity-title" },
      h("h2", { id: "activity-title" }, "Last hour, per minute"), chart),
    h("div", { class: "two" },
      h("section", { "aria-labelledby": "durations-title" },
        h("h2", { id: "durations-title" }, "Durations by type (completed in the last hour)"), durations),
      h("section", { "aria-labelledby": "failures-title" },
        h("h2", { id: "failures-title" }, "Newest failures"), failures)),
  );
  let slowDue = 0;
  const refreshCounts = () => showCounts(counts).catch(() => {});
  const refreshSlow = () => {
    slowDue = Date.now() + 10_000;
    showActivity(chart, durations).catch(() => {});
    showFailures(failures).catch(() => {});
  };
  refreshCounts();
  refreshSlow();
  // Counts follow every change; the hour's series and failures at most every 10 s.
  const unsubscribe = subscribe(() => {
    refreshCounts();
    if (Date.now() >= slowDue) refreshSlow();
  });
  return unsubscribe;
}

async function showCounts(box) {
  const totals = await Promise.all([count({}), ...STATUSES.map((status) => count({ status }))]);
  fill(
    box,
    h("a", { class: "count", href: "#/jobs", "data-status": "all" },
      h("span", { class: "number" }, String(totals[0])), h("span", {}, "all")),
    STATUSES.map((status, i) =>
      h("a", { class: `count status-${status}`, href: `#/jobs?status=${status}`, "data-status": status },
        h("span", { class: "number" }, String(totals[i + 1])), h("span", {}, status)),
    ),
  );
}

async function showActivity(chartBox, durationsBox) {
  const now = serverNow();
  const start = new Date(now - HOUR_MS).toISOString();
  const elements = "status,type,requestTime,transactionTime";
  const [created, finished] = await Promise.all([
    collect({ "request-time": `ge${start}`, _elements: elements, _count: PAGE, _total: "none" }, MAX_PAGES),
    collect(
      { status: "completed,error", "transaction-time": `ge${start}`, _elements: elements, _count: PAGE, _total: "none" },
      MAX_PAGES,
    ),
  ]);
  const minute = (instant) => Math.floor((Date.parse(instant) - (now - HOUR_MS)) / 60000);
  const perMinute = (jobs, field) => {
    const values = new Array(60).fill(0);
    for (const job of jobs) {
      const m = minute(job[field]);
      if (m >= 0 && m < 60) values[m] += 1;
    }
    return values;
  };
  const completed = finished.jobs.filter((job) => job.status === "completed");
  const failed = finished.jobs.filter((job) => job.status === "error");
  const series = [
    { name: "created", className: "created", values: perMinute(created.jobs, "requestTime") },
    { name: "completed", className: "completed", values: perMinute(completed, "transactionTime") },
    { name: "failed", className: "failed", values: perMinute(failed, "transactionTime") },
  ];
  const sampled = !created.complete || !finished.complete;
  fill(
    chartBox,
    lineChart({
      title: "Jobs created, completed and failed per minute over the last hour",
      series,
      labels: [new Date(now - HOUR_MS).toLocaleTimeString(), "now"],
    }),
    h("ul", { class: "legend" },
      series.map((s) => h("li", { class: s.className }, `${s.name}: ${s.values.reduce((a, b) => a + b, 0)}`))),
    sampled ? h("p", { class: "muted" }, `Sampled: the first ${MAX_PAGES * Number(PAGE)} jobs of each series.`) : null,
  );
  showDurations(durationsBox, completed, sampled);
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function showDurations(box, completed, sampled) {
  const byType = new Map();
  for (const job of completed) {
    const ms = Date.parse(job.transactionTime) - Date.parse(job.requestTime);
    if (Number.isNaN(ms)) continue;
    const type = job.type ?? "(no type)";
    if (!byType.has(type)) byType.set(type, []);
    byType.get(type).push(ms);
  }
  if (byType.size === 0) {
    fill(box, h("p", { class: "muted" }, "No job completed in the last hour."));
    return;
  }
  const rows = [...byType.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([type, values]) => {
    values.sort((a, b) => a - b);
    return h("tr", {},
      h("th", { scope: "row" }, type),
      h("td", { class: "num" }, String(values.length)),
      h("td", { class: "num" }, seconds(percentile(values, 50))),
      h("td", { class: "num" }, seconds(percentile(values, 95))));
  });
  fill(
    box,
    h("table", { class: "table" },
      h("caption", { class: "muted" }, "From request time to transaction time" + (sampled ? " (sampled)" : "")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "type"), h("th", { scope: "col" }, "jobs"),
        h("th", { scope: "col" }, "p50"), h("th", { scope: "col" }, "p95"))),
      h("tbody", {}, rows)),
  );
}

async function showFailures(box) {
  const { body } = await fhir(jobsUrl({ status: "error", _sort: "-transaction-time,-_lastUpdated", _count: "5", _total: "none" }));
  const jobs = (body.entry ?? []).map((entry) => entry.resource).filter(Boolean);
  if (jobs.length === 0) {
    fill(box, h("p", { class: "muted" }, "No failed jobs."));
    return;
  }
  fill(
    box,
    h("ul", { class: "failures" },
      jobs.map((job) =>
        h("li", {},
          h("a", { href: `#/job/${encodeURIComponent(job.id)}`, class: "mono" }, job.id),
          " ", statusBadge(job.status), " ", job.type ?? "", " ", time(job.transactionTime ?? job.meta?.lastUpdated),
          h("div", { class: "error-text" }, errorText(job))))),
  );
}
