// The job list: filters, sort and paging live in the address (#/jobs?status=…&_cursor=…), so
// a view can be shared and the back button works; rows follow live changes in place.
import { BASE, STATUSES, fhir, jobsUrl, linkQuery, progressFraction, progressText } from "./api.js";
import { fill, h, statusBadge, time } from "./dom.js";
import { subscribe } from "./live.js";

const SORTS = [
  ["-_lastUpdated", "last updated, newest first"],
  ["_lastUpdated", "last updated, oldest first"],
  ["-request-time", "requested, newest first"],
  ["request-time", "requested, oldest first"],
  ["status,-_lastUpdated", "status"],
  ["type,-_lastUpdated", "type"],
];
const PAGE_SIZES = ["10", "20", "50", "100"];
let jobTypes = null; // the profile's job types, read once from its CodeSystem

export function jobs(main, params) {
  const form = filterForm(params);
  const summary = h("p", { id: "list-summary", class: "muted", "aria-live": "polite" }, "Loading…");
  const body = h("tbody", {});
  const table = h("div", { class: "scroll" },
    h("table", { class: "table jobs", id: "jobs-table" },
      h("caption", { class: "visually-hidden" }, "Jobs"),
      h("thead", {}, h("tr", {},
        ["id", "status", "type", "progress", "requested", "last updated"].map((name) =>
          h("th", { scope: "col" }, name)))),
      body));
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const fresh = h("div", { id: "new-jobs" });
  fill(main, h("h1", { tabindex: "-1" }, "Jobs"), form, fresh, summary, table, pager);
  const rows = new Map();
  let stale = false;
  load(params).then(({ bundle }) => {
    const entries = (bundle.entry ?? []).map((entry) => entry.resource).filter(Boolean);
    const total = bundle.total;
    summary.textContent = total === undefined
      ? `${entries.length} jobs on this page`
      : `${total} ${total === 1 ? "job" : "jobs"} match; ${entries.length} on this page`;
    fill(body, entries.length
      ? entries.map((job) => {
          const row = jobRow(job);
          rows.set(job.id, row);
          return row;
        })
      : h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No jobs match.")));
    fill(pager,
      pageLink(linkQuery(bundle, "first"), "First page", params.has("_cursor")),
      pageLink(linkQuery(bundle, "previous"), "Previous page", true),
      pageLink(linkQuery(bundle, "next"), "Next page", true));
  }).catch(() => {
    summary.textContent = "The jobs could not be read.";
  });
  return subscribe((changes) => {
    for (const { id, job } of changes) {
      const row = rows.get(id);
      if (row && job) row.replaceWith(updated(rows, job));
      else if (row) row.classList.add("deleted");
      else if (!stale) {
        stale = true;
        fill(fresh, h("p", { class: "notice" }, "Jobs were added or changed outside this page. ",
          h("button", { type: "button", onclick: () => window.dispatchEvent(new HashChangeEvent("hashchange")) },
            "Reload the list")));
      }
    }
  });
}

function updated(rows, job) {
  const row = jobRow(job);
  rows.set(job.id, row);
  return row;
}

async function load(params) {
  const query = new URLSearchParams(params);
  if (!query.has("_sort")) query.set("_sort", "-_lastUpdated");
  if (!query.has("_count")) query.set("_count", "20");
  const { body } = await fhir(jobsUrl(query));
  return { bundle: body };
}

function pageLink(query, label, show) {
  if (!show) return null;
  if (query === null) return h("span", { class: "disabled", "aria-disabled": "true" }, label);
  return h("a", { href: `#/jobs?${query}`, class: "button" }, label);
}

export function jobRow(job) {
  const progress = progressText(job);
  const fraction = progressFraction(progress);
  return h("tr", { "data-id": job.id, "data-status": job.status ?? "" },
    h("td", { "data-label": "id" }, h("a", { href: `#/job/${encodeURIComponent(job.id)}`, class: "mono" }, job.id)),
    h("td", { "data-label": "status" }, statusBadge(job.status)),
    h("td", { "data-label": "type" }, job.type ?? ""),
    h("td", { class: "progress-cell", "data-label": "progress" },
      job.status === "accepted" && progress !== null
        ? [h("progress", { max: "100", value: fraction === null ? undefined : String(Math.round(fraction * 100)),
            "aria-label": `progress of ${job.id}` }), h("span", { class: "progress-text" }, progress)]
        : ""),
    h("td", { "data-label": "requested" }, time(job.requestTime)),
    h("td", { "data-label": "last updated" }, time(job.meta?.lastUpdated)));
}

/** The filters as a form; submitting it changes the address (a new history entry). */
function filterForm(params) {
  const status = h("select", { id: "filter-status", name: "status" },
    h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const type = h("select", { id: "filter-type", name: "type" }, h("option", { value: "" }, "any"));
  const chosenType = params.get("type");
  const addTypes = (codes) => {
    for (const code of new Set([...codes, ...(chosenType ? [chosenType] : [])])) {
      type.append(h("option", { value: code, selected: chosenType === code }, code));
    }
  };
  if (jobTypes) addTypes(jobTypes);
  else {
    loadJobTypes().then(addTypes, () => addTypes([]));
  }
  const times = params.getAll("request-time");
  const from = h("input", { id: "filter-from", type: "datetime-local", step: "1",
    value: localInput(times.find((t) => t.startsWith("ge"))?.slice(2)) });
  const to = h("input", { id: "filter-to", type: "datetime-local", step: "1",
    value: localInput(times.find((t) => t.startsWith("le"))?.slice(2)) });
  const sort = h("select", { id: "filter-sort", name: "_sort" },
    SORTS.map(([value, label]) => h("option", { value, selected: (params.get("_sort") ?? "-_lastUpdated") === value }, label)));
  const size = h("select", { id: "filter-count", name: "_count" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: (params.get("_count") ?? "20") === n }, n)));
  const field = (label, control) => h("div", { class: "field" }, h("label", { for: control.id }, label), control);
  return h("form", {
    class: "filters",
    "aria-label": "Filter jobs",
    onsubmit: (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      if (status.value) query.set("status", status.value);
      if (type.value) query.set("type", type.value);
      if (from.value) query.append("request-time", `ge${new Date(from.value).toISOString()}`);
      if (to.value) query.append("request-time", `le${new Date(to.value).toISOString()}`);
      query.set("_sort", sort.value);
      query.set("_count", size.value);
      window.location.hash = `#/jobs?${query}`;
    },
  },
  field("Status", status), field("Type", type), field("Requested from", from), field("Requested until", to),
  field("Sort by", sort), field("Per page", size),
  h("div", { class: "field actions" }, h("button", { type: "submit", id: "apply-filters" }, "Apply"),
    h("a", { href: "#/jobs", class: "button secondary" }, "Clear")));
}

async function loadJobTypes() {
  const { body } = await fhir(`${BASE}/CodeSystem`);
  const codes = [];
  for (const entry of body.entry ?? []) {
    for (const concept of entry.resource?.concept ?? []) if (concept.code) codes.push(concept.code);
  }
  jobTypes = codes;
  return codes;
}

/** An instant as a datetime-local input's value (the browser's time zone). */
function localInput(instant) {
  if (!instant) return undefined;
  const date = new Date(instant);
  if (Number.isNaN(date.getTime())) return undefined;
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}
