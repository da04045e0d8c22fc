// The user's bearer token: in sessionStorage only (gone when the tab closes; never a cookie,
// never logged). The console link `fhir-server serve` prints carries it in the URL fragment,
// which browsers never send to a server; it is taken from there once and removed from the
// address bar and the history.

const KEY = "fhir-server.console.token";

export function takeTokenFromFragment() {
  const hash = window.location.hash;
  if (!hash.startsWith("#token=")) return;
  let token = "";
  try {
    token = decodeURIComponent(hash.slice("#token=".length)).trim();
  } catch {
    // a mangled link: no token, the sign-in form asks for one
  }
  if (token) window.sessionStorage.setItem(KEY, token);
  window.history.replaceState(null, "", window.location.pathname + window.location.search + "#/");
}

export function token() {
  return window.sessionStorage.getItem(KEY);
}

export function signIn(value) {
  window.sessionStorage.setItem(KEY, value.trim().replace(/^Bearer\s+/i, ""));
}

export function signOut() {
  window.sessionStorage.removeItem(KEY);
}

/** The token's claims, read without checking the signature: only to label the page and to
 * grey out what the token cannot do (the server decides every request). */
export function claims() {
  const value = token();
  if (!value) return {};
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)));
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    return {};
  }
}

export function scopes() {
  const scope = claims().scope;
  return typeof scope === "string" ? scope.split(/\s+/).filter(Boolean) : [];
}

const V1 = { read: "rs", write: "cud", "*": "cruds" };

/** Whether a SMART scope of the token grants `letter` (c r u d s) on AsyncJob, as the server
 * reads them (auth/scopes.py): system/ or user/, AsyncJob or *, v2 letters or v1 words. */
export function grants(letter, type = "AsyncJob") {
  return scopes().some((scope) => {
    const match = /^(system|user)\/([A-Za-z*]+)\.([a-z*]+)$/.exec(scope);
    if (!match || (match[2] !== type && match[2] !== "*")) return false;
    const permissions = V1[match[3]] ?? (/^c?r?u?d?s?$/.test(match[3]) ? match[3] : "");
    return permissions.includes(letter);
  });
}

export function hasScope(name) {
  return scopes().includes(name);
}
