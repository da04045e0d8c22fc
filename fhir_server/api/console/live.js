// Live updates: the one place that learns which jobs changed. Views subscribe and get, about
// once a second, the changes since they subscribed: [{id, job}] (job null once deleted).
//
// Today it polls the type history (GET AsyncJob/_history?_since=…: every version the token
// may see, deletions included), newest first. A Subscription WebSocket can replace poll()
// behind the same subscribe() without the views noticing.
import { BASE, fhir, linkQuery } from "./api.js";

const INTERVAL_MS = 1000;
const MAX_PAGES = 5; // a burst of more versions than 5 pages in a second: the views re-read
const listeners = new Set();
let timer = null;
let since = null; // the newest lastModified seen: the next poll asks from there (inclusive)
let seenAtSince = new Set(); // versions at exactly `since`, not to be reported twice
let running = false;

export function subscribe(listener) {
  listeners.add(listener);
  if (timer === null) {
    timer = window.setInterval(tick, INTERVAL_MS);
    tick();
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0) stop();
  };
}

export function stop() {
  if (timer !== null) window.clearInterval(timer);
  timer = null;
  since = null;
  seenAtSince = new Set();
}

async function tick() {
  if (running) return; // a slow answer: skip a beat rather than pile up requests
  running = true;
  try {
    await poll();
  } catch {
    // reported by api.js (the banner); the next tick tries again
  } finally {
    running = false;
  }
}

async function poll() {
  if (since === null) {
    // Start from the newest version there is: only what changes from now on is news.
    const { body } = await fhir(`${BASE}/AsyncJob/_history?_count=1`);
    const newest = body.entry?.[0];
    since = newest?.response?.lastModified ?? new Date(0).toISOString();
    seenAtSince = new Set(newest ? [versionKey(newest)] : []);
    return;
  }
  let query = new URLSearchParams({ _since: since, _count: "200" });
  const entries = [];
  for (let page = 0; page < MAX_PAGES && query !== null; page += 1) {
    const { body } = await fhir(`${BASE}/AsyncJob/_history?${query}`);
    entries.push(...(body.entry ?? []));
    query = linkQuery(body, "next");
  }
  const fresh = entries.filter((entry) => !seenAtSince.has(versionKey(entry)));
  if (fresh.length === 0) return;
  const newest = fresh.reduce((a, b) => (modified(b) > modified(a) ? b : a));
  const newestTime = modified(newest);
  if (newestTime !== since) seenAtSince = new Set();
  since = newestTime;
  for (const entry of entries) if (modified(entry) === since) seenAtSince.add(versionKey(entry));
  // Newest first: the first version of each job is its current state.
  const changes = new Map();
  for (const entry of fresh) {
    const id = entry.resource?.id ?? entry.fullUrl?.split("/").pop();
    if (id && !changes.has(id)) changes.set(id, { id, job: entry.resource ?? null });
  }
  const batch = [...changes.values()];
  for (const listener of [...listeners]) listener(batch);
}

function modified(entry) {
  return entry?.response?.lastModified ?? "";
}

function versionKey(entry) {
  return `${entry.fullUrl}|${entry.response?.etag}|${entry.request?.method}`;
}
