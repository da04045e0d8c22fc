// One job: every element, its output rendered readably, its version history as a timeline,
// what the status endpoint and the eHealth adapter answer for it, cancel and delete.
import { BASE, FINAL, ROOT, fhir, outcomeText, progressFraction, progressText, readJson, send } from "./api.js";
import { fill, h, httpUrl, jsonBlock, link, statusBadge, time } from "./dom.js";
import { grants, hasScope } from "./session.js";
import { subscribe } from "./live.js";

const KNOWN = ["resourceType", "id", "meta", "status", "type", "request", "requestTime", "transactionTime",
  "dataVersion", "minServerVersion", "output"];

export function job(main, id) {
  const heading = h("h1", { tabindex: "-1" }, "Job ", h("span", { class: "mono" }, id));
  const actions = h("div", { class: "actions", id: "job-actions" });
  const elements = h("section", { "aria-labelledby": "elements-title" });
  const output = h("section", { "aria-labelledby": "output-title" });
  const history = h("section", { "aria-labelledby": "history-title" });
  const polls = h("section", { "aria-labelledby": "polls-title" });
  const message = h("p", { id: "job-message", role: "status", class: "muted" });
  fill(main, h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), heading, actions, message, elements, output,
    history, polls);
  let current = null;
  const refresh = async () => {
    let found;
    try {
      found = await fhir(`${BASE}/AsyncJob/${encodeURIComponent(id)}`, { quiet: [404, 410] });
    } catch (error) {
      const text = { 404: "No such job: it does not exist, or this token may not see it.", 410: "This job was deleted." };
      fill(elements, h("p", { class: "error-text", id: "job-missing" }, text[error.status] ?? error.message));
      fill(actions);
      fill(output);
      fill(polls);
      if (error.status === 410) showHistory(history, id).catch(() => {});
      else fill(history);
      return;
    }
    current = found.body;
    showElements(elements, current);
    showOutput(output, current);
    showActions(actions, current, message, refresh);
    showHistory(history, id).catch(() => {});
    showPolls(polls, current).catch(() => {});
  };
  refresh();
  return subscribe((changes) => {
    if (changes.some((change) => change.id === id)) refresh();
  });
}

function row(name, ...value) {
  return [h("dt", {}, name), h("dd", {}, ...value)];
}

function showElements(box, job) {
  const progress = progressText(job);
  const fraction = progressFraction(progress);
  const rows = [
    row("status", statusBadge(job.status),
      job.status === "accepted" && progress !== null
        ? [" ", h("progress", { max: "100", value: fraction === null ? undefined : String(Math.round(fraction * 100)),
            "aria-label": "progress" }), " ", progress]
        : null),
    row("type", job.type ?? h("span", { class: "muted" }, "—")),
    row("request", link(job.request ?? "")),
    row("requestTime", time(job.requestTime)),
    row("transactionTime", time(job.transactionTime)),
    row("dataVersion", job.dataVersion ?? "—"),
    row("minServerVersion", job.minServerVersion ?? "—"),
    row("version", job.meta?.versionId ?? "—"),
    row("lastUpdated", time(job.meta?.lastUpdated)),
  ];
  for (const [name, value] of Object.entries(job)) {
    if (KNOWN.includes(name)) continue;
    rows.push(row(name, typeof value === "object" ? jsonBlock(value) : String(value)));
  }
  for (const [name, value] of Object.entries(job.meta ?? {})) {
    if (name !== "versionId" && name !== "lastUpdated") rows.push(row(`meta.${name}`, jsonBlock(value)));
  }
  fill(box, h("h2", { id: "elements-title" }, "Elements"), h("dl", { class: "elements", id: "job-elements" }, rows));
}

function showOutput(box, job) {
  const parameters = job.output?.parameter ?? [];
  fill(box, h("h2", { id: "output-title" }, "Output"),
    parameters.length
      ? h("ul", { class: "parameters", id: "job-output" }, parameters.map(parameterItem))
      : h("p", { class: "muted" }, "No output."));
}

function parameterItem(parameter) {
  const name = h("span", { class: "param-name" }, String(parameter?.name ?? "?"));
  const parts = parameter?.part;
  if (Array.isArray(parts)) return h("li", {}, name, h("ul", { class: "parameters" }, parts.map(parameterItem)));
  if (parameter?.resource) return h("li", {}, name, ": ", resourceView(parameter.resource));
  const entry = Object.entries(parameter ?? {}).find(([key]) => key.startsWith("value"));
  if (!entry) return h("li", {}, name);
  const [key, value] = entry;
  let shown;
  if (key === "valueReference") shown = referenceView(value);
  else if (typeof value === "object") shown = jsonBlock(value);
  else if (["valueUri", "valueUrl", "valueCanonical", "valueString"].includes(key) && httpUrl(value)) shown = link(value);
  else if (key === "valueInstant" || key === "valueDateTime") shown = time(value);
  else shown = h("span", {}, String(value));
  return h("li", {}, name, ": ", shown);
}

function referenceView(reference) {
  const text = reference?.reference ?? reference?.display ?? JSON.stringify(reference);
  return httpUrl(text) ? link(text) : h("span", { class: "mono" }, String(text));
}

function resourceView(resource) {
  if (resource?.resourceType === "OperationOutcome" && Array.isArray(resource.issue)) {
    return h("ul", { class: "issues" }, resource.issue.map((issue) =>
      h("li", { class: `issue severity-${/^[a-z]+$/.test(issue?.severity) ? issue.severity : "other"}` },
        h("strong", {}, String(issue?.severity ?? "?")), ` ${issue?.code ?? ""}: `,
        String(issue?.details?.text ?? issue?.diagnostics ?? ""),
        issue?.expression ? h("span", { class: "muted" }, ` (${issue.expression.join(", ")})`) : null)));
  }
  return jsonBlock(resource);
}

function showActions(box, job, message, refresh) {
  const final = FINAL.has(job.status);
  const mayCancel = grants("u");
  const cancel = h("button", {
    type: "button", id: "cancel-job", disabled: final || !mayCancel,
    title: final ? "The job is final" : mayCancel ? "" : "The token lacks the scope to update jobs",
    onclick: () => confirmThen(`Cancel job ${job.id}?`, "Cancel the job", async () => {
      const response = await send(`${BASE}/AsyncJob/${encodeURIComponent(job.id)}/$cancel`, { method: "POST" });
      const body = await readJson(response);
      message.textContent = response.ok ? "The job was cancelled." : `Not cancelled: ${outcomeText(body) || response.status}`;
      refresh();
    }),
  }, "Cancel job");
  const children = [cancel];
  if (!mayCancel) children.push(h("span", { class: "muted" }, " The token may not update jobs."));
  else if (final) children.push(h("span", { class: "muted" }, " The job is final."));
  if (grants("d")) {
    children.push(h("button", {
      type: "button", id: "delete-job", class: "danger",
      onclick: () => confirmThen(`Delete job ${job.id}? Its history stays.`, "Delete the job", async () => {
        const response = await send(`${BASE}/AsyncJob/${encodeURIComponent(job.id)}`, { method: "DELETE" });
        const body = await readJson(response);
        if (response.ok) window.location.hash = "#/jobs";
        else message.textContent = `Not deleted: ${outcomeText(body) || response.status}`;
      }),
    }, "Delete job"));
  }
  fill(box, children);
}

/** A modal confirmation (keyboard: Escape keeps, Tab moves between the two buttons). */
function confirmThen(question, action, run) {
  const yes = h("button", { type: "button", class: "danger", id: "confirm-yes" }, action);
  const no = h("button", { type: "button", id: "confirm-no" }, "Keep it");
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-question" },
    h("p", { id: "confirm-question" }, question), h("div", { class: "actions" }, no, yes));
  document.body.append(dialog);
  const close = () => {
    dialog.close();
    dialog.remove();
  };
  no.addEventListener("click", close);
  dialog.addEventListener("cancel", close);
  yes.addEventListener("click", () => {
    close();
    run();
  });
  dialog.showModal();
  no.focus();
}

async function showHistory(box, id) {
  const { body } = await fhir(`${BASE}/AsyncJob/${encodeURIComponent(id)}/_history?_count=100`);
  const entries = body.entry ?? [];
  const items = entries.map((entry, i) => {
    const older = entries[i + 1]?.resource;
    const version = entry.response?.etag?.replace(/^W\/"|"$/g, "") ?? "?";
    return h("li", { class: "event" },
      h("div", { class: "when" }, time(entry.response?.lastModified)),
      h("div", {}, h("strong", {}, `${entry.request?.method ?? "?"} ${entry.request?.url ?? ""}`),
        ` → ${entry.response?.status ?? ""} (version ${version})`),
      h("ul", { class: "changes" }, changes(older, entry.resource, entry.request?.method)));
  });
  fill(box, h("h2", { id: "history-title" }, "History"),
    h("p", { class: "muted" }, "Newest first. The server records the request that wrote each version, not who sent it."),
    h("ol", { class: "timeline", id: "job-history" }, items));
}

/** What a version changed from the one before: one line per element. */
function changes(before, after, method) {
  if (!after) return [h("li", {}, "deleted")];
  if (!before) return [h("li", {}, method === "POST" ? "created" : "created (or re-created)")];
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  names.delete("meta");
  const lines = [];
  for (const name of names) {
    const [a, b] = [JSON.stringify(before[name]), JSON.stringify(after[name])];
    if (a === b) continue;
    if (typeof after[name] === "string" && (typeof before[name] === "string" || before[name] === undefined)) {
      lines.push(h("li", {}, `${name}: ${before[name] ?? "—"} → ${after[name]}`));
    } else if (name === "output") {
      const text = progressText(after);
      lines.push(h("li", {}, text && text !== progressText(before) ? `progress: ${text}` : "output changed"));
    } else {
      lines.push(h("li", {}, after[name] === undefined ? `${name} removed` : `${name} changed`));
    }
  }
  return lines.length ? lines : [h("li", { class: "muted" }, "no change")];
}

/** What pollers see: the status endpoint, and the eHealth adapter's path for the job. */
async function showPolls(box, job) {
  const id = encodeURIComponent(job.id);
  const views = [["Status endpoint", `${BASE}/job/${id}/status`, null]];
  const composition = (job.type ?? "").startsWith("composition");
  views.push(composition
    ? ["eHealth adapter (composition job)", `${ROOT}patients/composition/job/${id}`, "composition:read"]
    : ["eHealth adapter", `${ROOT}Jobs/${id}`, "job:read"]);
  const sections = await Promise.all(views.map(async ([title, url, scope]) => {
    const path = new URL(url).pathname;
    if (scope && !hasScope(scope)) {
      return h("div", { class: "poll" }, h("h3", {}, title), h("p", { class: "muted" }, `The token lacks ${scope}.`));
    }
    const response = await send(url, { headers: { Accept: "application/json" } });
    const body = await readJson(response);
    const headers = ["Retry-After", "X-Progress", "Content-Location", "Location"]
      .map((name) => [name, response.headers.get(name)]).filter(([, value]) => value !== null);
    return h("div", { class: "poll" },
      h("h3", {}, title),
      h("p", {}, h("code", {}, `GET ${path}`), " → ", h("strong", {}, String(response.status))),
      headers.length ? h("ul", {}, headers.map(([name, value]) => h("li", {}, h("code", {}, `${name}: ${value}`)))) : null,
      body === null ? null : jsonBlock(body));
  }));
  fill(box, h("h2", { id: "polls-title" }, "What pollers see"), h("div", { class: "polls" }, sections));
}
