// The console's entry point: sign-in, the error banner and the views by address:
// #/ overview, #/jobs?… the job list, #/job/<id> one job.
import { problems } from "./api.js";
import { fill, h } from "./dom.js";
import { job } from "./job.js";
import { jobs } from "./jobs.js";
import { stop as stopLive } from "./live.js";
import { overview } from "./overview.js";
import { claims, signIn, signOut, takeTokenFromFragment, token } from "./session.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let leave = null; // the current view's cleanup (its live subscription)
let problem = null; // what the banner shows: "unreachable" or "token"

function showBanner(kind, ...children) {
  // The same trouble again (a poll a second): say it once, for screen readers too.
  if (problem === kind && kind !== "request") return;
  problem = kind;
  fill(banner, ...children);
  banner.className = `banner ${kind}`;
  banner.hidden = false;
}

function hideBanner(kind) {
  if (problem !== kind) return;
  problem = null;
  banner.hidden = true;
  fill(banner);
}

problems.addEventListener("problem", (event) => {
  const error = event.detail;
  if (error.status === 0) {
    showBanner("unreachable", "The server is unreachable. The console keeps trying.");
  } else if (error.status === 401) {
    // Every further request would be refused too: stop the view's live updates.
    if (leave) leave();
    leave = null;
    stopLive();
    showBanner("token", `Your token was refused: ${error.message}. `,
      h("button", { type: "button", id: "sign-in-again", onclick: () => { signOut(); route(); } }, "Sign in again"));
  } else if (problem === null || problem === "request") {
    showBanner("request", `The server answered ${error.status}: ${error.message}`);
  }
});
problems.addEventListener("reached", (event) => {
  hideBanner("unreachable");
  if (event.detail !== 401) hideBanner("token");
});

function showWho() {
  if (!token()) {
    fill(who);
    nav.hidden = true;
    return;
  }
  const { sub, exp, client_id: clientId } = claims();
  const expires = typeof exp === "number" ? new Date(exp * 1000).toLocaleString() : "?";
  nav.hidden = false;
  fill(who,
    h("span", { id: "signed-in-as", title: `token expires ${expires}` }, `Signed in as ${clientId ?? sub ?? "?"}`),
    " ",
    h("button", { type: "button", id: "sign-out", onclick: () => { signOut(); route(); } }, "Sign out"));
}

function signInView() {
  const input = h("textarea", { id: "token-input", name: "token", rows: "4", required: true,
    autocomplete: "off", spellcheck: "false", "aria-describedby": "token-help" });
  fill(main,
    h("h1", { tabindex: "-1" }, "Sign in"),
    h("form", {
      class: "sign-in",
      onsubmit: (event) => {
        event.preventDefault();
        if (!input.value.trim()) return;
        signIn(input.value);
        window.location.hash = "#/";
        route();
      },
    },
    h("label", { for: "token-input" }, "Bearer token"),
    input,
    h("p", { id: "token-help", class: "muted" },
      "The console shows and does what this token may. It is kept in this tab only (sessionStorage) ",
      "and forgotten when you sign out or close the tab. `fhir-server serve` prints a console link that signs ",
      "the local admin in."),
    h("button", { type: "submit", id: "sign-in" }, "Sign in")));
}

function route() {
  if (leave) leave();
  leave = null;
  stopLive();
  hideBanner("request");
  showWho();
  if (!token()) {
    hideBanner("token");
    signInView();
    focusHeading();
    return;
  }
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?", 2);
  const params = new URLSearchParams(query);
  for (const a of nav.querySelectorAll("a")) a.removeAttribute("aria-current");
  if (path.startsWith("/job/")) {
    leave = job(main, decodeURIComponent(path.slice("/job/".length)));
  } else if (path === "/jobs") {
    nav.querySelector('[data-view="jobs"]').setAttribute("aria-current", "page");
    leave = jobs(main, params);
  } else {
    nav.querySelector('[data-view="overview"]').setAttribute("aria-current", "page");
    leave = overview(main);
  }
  focusHeading();
}

function focusHeading() {
  main.querySelector("h1")?.focus({ preventScroll: true });
}

takeTokenFromFragment();
window.addEventListener("hashchange", route);
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
route();
