// The public API, with the user's token: FHIR REST under /fhir/R4, the status endpoint, the
// eHealth adapter. Failures are reported to `problems` (the page's error banner listens).
import { token } from "./session.js";

// Relative to the page (/console): the API of the same server, behind any path prefix.
export const ROOT = new URL(".", document.baseURI).href;
export const BASE = new URL("fhir/R4", document.baseURI).href;
export const problems = new EventTarget();

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The server's clock, from the Date header of the newest answer (the browser's may differ). */
let clockOffset = 0;
export function serverNow() {
  return Date.now() + clockOffset;
}

/** One request; answers whatever the server answered (errors included). Throws ApiError
 * status 0 when the server cannot be reached. */
export async function send(url, { method = "GET", headers = {}, body } = {}) {
  const value = token();
  let response;
  try {
    response = await fetch(url, {
      method,
      body,
      headers: {
        Accept: "application/fhir+json",
        ...(value ? { Authorization: `Bearer ${value}` } : {}),
        ...headers,
      },
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    const error = new ApiError(0, "The server is unreachable. Retrying…");
    problems.dispatchEvent(new CustomEvent("problem", { detail: error }));
    throw error;
  }
  const date = Date.parse(response.headers.get("Date") ?? "");
  if (!Number.isNaN(date)) clockOffset = date - Date.now();
  problems.dispatchEvent(new CustomEvent("reached", { detail: response.status }));
  // A refusal of a token the user has since replaced or signed out of is old news.
  if (response.status === 401 && value && token() === value) {
    const body = await readJson(response.clone());
    const error = new ApiError(401, outcomeText(body) || "The token was refused", body);
    problems.dispatchEvent(new CustomEvent("problem", { detail: error }));
  }
  return response;
}

export async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** The text of an OperationOutcome's issues (or an eHealth error's message). */
export function outcomeText(body) {
  if (!body || typeof body !== "object") return "";
  if (Array.isArray(body.issue)) {
    return body.issue
      .map((issue) => issue?.diagnostics ?? issue?.details?.text ?? issue?.code ?? "")
      .filter(Boolean)
      .join("; ");
  }
  if (body.error && typeof body.error === "object") return String(body.error.message ?? "");
  return "";
}

/** A request whose answer must be a success: its JSON body, else an ApiError (reported to
 * the banner unless its status is one of `quiet`: the caller shows those itself). */
export async function fhir(url, { quiet = [], ...options } = {}) {
  const response = await send(url, options);
  const body = await readJson(response);
  if (!response.ok) {
    const error = new ApiError(response.status, outcomeText(body) || `HTTP ${response.status}`, body);
    if (response.status !== 401 && !quiet.includes(response.status)) problems.dispatchEvent(new CustomEvent("problem", { detail: error }));
    throw error;
  }
  return { body, response };
}

export function jobsUrl(params) {
  const query = params instanceof URLSearchParams ? params : new URLSearchParams(params);
  return `${BASE}/AsyncJob?${query}`;
}

/** Only the query of a paging link: the console never follows a link to another host. */
export function linkQuery(bundle, relation) {
  const found = (bundle?.link ?? []).find((each) => each.relation === relation);
  if (!found) return null;
  try {
    return new URL(found.url).searchParams;
  } catch {
    return null;
  }
}

export async function count(params) {
  const { body } = await fhir(jobsUrl({ ...params, _summary: "count" }));
  return body.total ?? 0;
}

/** Every job a search finds, following `next` links, at most `maxPages` pages; with whether
 * it stopped early. */
export async function collect(params, maxPages) {
  let query = new URLSearchParams(params);
  const jobs = [];
  for (let page = 0; page < maxPages; page += 1) {
    const { body } = await fhir(jobsUrl(query));
    for (const entry of body.entry ?? []) if (entry.resource) jobs.push(entry.resource);
    query = linkQuery(body, "next");
    if (query === null) return { jobs, complete: true };
  }
  return { jobs, complete: false };
}

export const STATUSES = ["accepted", "completed", "error", "cancelled"];
export const FINAL = new Set(["completed", "error", "cancelled"]);

/** The job's output parameter `name`, or undefined. */
export function parameter(job, name) {
  return (job?.output?.parameter ?? []).find((p) => p?.name === name);
}

/** Progress as the status endpoint's X-Progress has it: the `progress` output parameter. */
export function progressText(job) {
  const found = parameter(job, "progress");
  if (!found) return null;
  const value = found.valueString ?? found.valueInteger ?? found.valueDecimal;
  return value === undefined ? null : String(value);
}

/** A fraction 0..1 read from a progress text ("42%", "2 of 4 …"), else null. */
export function progressFraction(text) {
  if (!text) return null;
  const percent = /(\d+(?:\.\d+)?)\s*%/.exec(text);
  if (percent) return Math.min(1, Number(percent[1]) / 100);
  const ratio = /([\d,]+)\s*(?:of|\/)\s*([\d,]+)/.exec(text);
  if (ratio) {
    const [done, total] = [ratio[1], ratio[2]].map((n) => Number(n.replace(/,/g, "")));
    if (total > 0) return Math.min(1, done / total);
  }
  return null;
}

/** A failed job's error text: its OperationOutcome's issues, else its status code. */
export function errorText(job) {
  const outcome = parameter(job, "outcome")?.resource;
  const text = outcomeText(outcome);
  if (text) return text;
  const code = parameter(job, "status_code");
  return code ? `status ${code.valueInteger ?? code.valueString}` : "Job failed";
}
