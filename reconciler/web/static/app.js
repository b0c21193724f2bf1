// The reconciler dashboard: two read-only pages over the JSON API (SPEC 6.1).
// No framework, no build step, nothing fetched from elsewhere. Every value that comes
// from the API reaches the page through textContent or a DOM property, never as HTML.
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "reconcile.apiToken";
  const PAGE_SIZE = 50;
  const STATES = [
    "created", "provisioning", "provisioned", "provision_failed",
    "configuring", "configured", "configure_failed",
    "releasing", "released", "release_failed",
    "starting", "running", "run_failed",
    "destroying", "destroyed", "destroy_failed",
  ];

  // -- DOM helpers --------------------------------------------------------------------------

  // el("td", {class: "x"}, "text", child): strings become text nodes, never markup.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "href") node.href = safeHref(value);
      else if (key === "title") node.title = String(value);
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function replace(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  // Only our own paths and http(s) links become links: never a script or data URL.
  function safeHref(value) {
    const url = new URL(String(value), window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : "#";
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function envHref(name) {
    return "/environments/" + encodeURIComponent(name);
  }

  function when(value) {
    if (!value) return "";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
  }

  function ago(value) {
    const date = new Date(value);
    if (!value || Number.isNaN(date.getTime())) return "";
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 60) return Math.max(seconds, 0) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  function time(value) {
    return value ? el("time", { datetime: value, title: when(value) }, ago(value) || when(value)) : "";
  }

  function stateBadge(state) {
    if (!state || state === "none") return el("span", { class: "muted", title: "no state.json on the state branch" }, "not observed");
    if (state === "corrupt") return el("span", { class: "state state-error", title: "its state.json cannot be read" }, "corrupt state.json");
    let kind = "progress";
    if (state.endsWith("_failed") || state === "corrupt" || state === "invalid") kind = "error";
    else if (state === "running" || state === "destroyed") kind = "done";
    else if (!state.endsWith("ing")) kind = "rest";
    return el("span", { class: "state state-" + kind }, state);
  }

  function shortSha(sha) {
    return sha ? String(sha).slice(0, 12) : "";
  }

  // -- the API, with the bearer token asked for once ------------------------------------------

  function token() {
    return window.sessionStorage.getItem(TOKEN_KEY);
  }

  async function getJSON(path) {
    for (;;) {
      const headers = { Accept: "application/json" };
      const saved = token();
      if (saved) headers.Authorization = "Bearer " + saved;
      const response = await fetch(path, { headers, cache: "no-store" });
      if (response.status === 401) {
        await askForToken(saved ? "That token was refused." : "");
        continue;
      }
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        const message = body && (body.error || body.detail || body.message);
        const error = new Error(message ? String(message) : "HTTP " + response.status);
        error.status = response.status;
        throw error;
      }
      return body;
    }
  }

  let tokenWaiters = null;

  // Shows the token form (once, however many requests are waiting) and resolves when it is sent.
  function askForToken(problem) {
    const form = byId("token-form");
    replace(byId("token-problem"), problem);
    if (tokenWaiters === null) {
      tokenWaiters = [];
      form.hidden = false;
      form.elements.token.value = "";
      form.elements.token.focus();
    }
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }

  function setUpTokenForm() {
    const form = byId("token-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = form.elements.token.value.trim();
      if (!value) return;
      window.sessionStorage.setItem(TOKEN_KEY, value);
      form.hidden = true;
      const waiting = tokenWaiters || [];
      tokenWaiters = null;
      for (const resolve of waiting) resolve();
      reconnectEvents();
    });
  }

  // -- live updates: one EventSource, refreshes coalesced ----------------------------------

  let events = null;
  let onStateCommit = () => {};

  function eventsURL() {
    const saved = token();
    return API + "/events" + (saved ? "?token=" + encodeURIComponent(saved) : "");
  }

  function reconnectEvents() {
    if (events) events.close();
    events = new EventSource(eventsURL());
    const live = byId("live");
    events.onopen = () => {
      live.className = "live live-on";
      replace(live, "live");
      onStateCommit(null); // whatever happened while we were not listening
    };
    events.onerror = () => {
      live.className = "live live-off";
      replace(live, "reconnecting…");
      // The browser retries a dropped stream by itself, but not one refused with an HTTP error.
      // While the token form is up, sending it reconnects.
      if (events.readyState === EventSource.CLOSED) {
        window.setTimeout(() => tokenWaiters === null && reconnectEvents(), 3000);
      }
    };
    const handle = (message) => {
      let data = null;
      try {
        data = JSON.parse(message.data);
      } catch (_) {
        data = null;
      }
      onStateCommit(data);
    };
    events.onmessage = handle;
    // SSE delivers a named event only to listeners of that name: every kind of SPEC 4.1.
    for (const kind of ["transition", "drift", "in-sync", "suspend", "resume", "retry", "unlock"]) {
      events.addEventListener(kind, handle);
    }
  }

  // Runs `load` now, and once more after it if asked again meanwhile: a burst of commits is
  // one or two requests, never one per commit.
  function coalesced(load) {
    let running = false;
    let again = false;
    return async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          await load();
        } while (again);
      } finally {
        running = false;
      }
    };
  }

  function showError(error) {
    const box = byId("problem");
    if (!box) return;
    box.hidden = !error;
    replace(box, error ? "Could not load: " + error.message : "");
  }

  // -- GET / : the fleet ----------------------------------------------------------------------

  function fleetQuery() {
    const params = new URLSearchParams(window.location.search);
    return {
      selector: params.get("selector") || "",
      state: params.get("state") || "",
      name: params.get("name") || "",
      offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0),
      limit: Math.min(500, Math.max(1, parseInt(params.get("limit") || String(PAGE_SIZE), 10) || PAGE_SIZE)),
    };
  }

  function fleetSearch(query) {
    const params = new URLSearchParams();
    for (const key of ["selector", "state", "name"]) if (query[key]) params.set(key, query[key]);
    if (query.offset) params.set("offset", String(query.offset));
    if (query.limit !== PAGE_SIZE) params.set("limit", String(query.limit));
    const text = params.toString();
    return text ? "?" + text : "";
  }

  function navigate(query) {
    window.history.pushState(null, "", window.location.pathname + fleetSearch(query));
    refreshFleet();
  }

  // Runs `render` only when `inputs` differ from those it last rendered `node` from.
  function unlessSame(node, inputs, render) {
    const signature = JSON.stringify(inputs);
    if (node.dataset.signature === signature) return;
    render();
    node.dataset.signature = signature;
  }

  function renderCounts(counts, total, query) {
    const list = byId("counts");
    const items = [el("li", { class: "count-total" }, el("strong", {}, String(total)), " environments")];
    const known = Object.keys(counts || {}).sort((a, b) => {
      const ia = STATES.indexOf(a);
      const ib = STATES.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    for (const state of known) {
      const link = el("a", { href: "?" + new URLSearchParams({ ...pick(query), state }).toString() },
        stateBadge(state), " ", el("strong", { "data-count": state }, String(counts[state])));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        byId("filter-state").value = state;
        navigate({ ...query, state, offset: 0 });
      });
      items.push(el("li", {}, link));
    }
    replace(list, items);
  }

  function pick(query) {
    const out = {};
    for (const key of ["selector", "name"]) if (query[key]) out[key] = query[key];
    return out;
  }

  function lockCell(lock) {
    if (!lock) return "";
    const holder = lock.holder && typeof lock.holder === "object"
      ? lock.holder.host + ":" + lock.holder.pid
      : lock.holder;
    const since = lock.since || lock.acquiredAt;
    return el("span", { class: lock.stale ? "lock lock-stale" : "lock" },
      String(holder || "?"), since ? [" since ", time(since)] : "", lock.stale ? [" ", el("span", { class: "tag tag-error" }, "stale")] : "");
  }

  // "Ada Lovelace <ada@example.com>" -> "Ada Lovelace" in the table; the whole value is its title.
  function personName(actor) {
    const name = String(actor).replace(/\s+<[^<>\s]+@[^<>\s]+>$/, "");
    return name || String(actor);
  }

  function transitionCell(last) {
    if (!last) return "";
    const what = last.from !== undefined && last.to !== undefined ? last.from + " → " + last.to : last.event || "";
    return el("span", {}, what, " ", time(last.at),
      last.actor ? el("span", { class: "muted", title: last.actor }, " by " + personName(last.actor)) : "");
  }

  function failureCell(failure, problems) {
    const parts = [];
    if (failure && typeof failure === "object") {
      const step = failure.failedStep ? failure.failedStep + ": " : "";
      const attempt = failure.attempt ? " (attempt " + failure.attempt + ")" : "";
      const text = step + (failure.errorSummary || "") + attempt;
      parts.push(el("span", { class: "failure", title: (failure.errorKind ? failure.errorKind + ": " : "") + text }, text));
    } else if (failure) parts.push(el("span", { class: "failure", title: String(failure) }, String(failure)));
    for (const problem of problems || []) parts.push(el("div", { class: "failure", title: String(problem) }, String(problem)));
    return parts;
  }

  function driftCell(drift, suspended) {
    return [
      drift && drift.status ? el("span", { class: "tag tag-drift-" + drift.status, title: drift.summary || "" }, drift.status) : "",
      suspended ? el("span", { class: "tag tag-suspended", title: suspended.reason || "" }, "suspended") : "",
    ];
  }

  function convergedCell(row) {
    const yes = row.converged === true;
    const why = row.verdict && row.verdict !== "converged" ? row.verdict : "";
    return el("span", { class: yes ? "yes" : "no", title: row.reason || "" }, yes ? "yes" : "no" + (why ? ": " + why : ""));
  }

  function fleetRow(row, previous) {
    const tr = el("tr", { "data-name": row.name },
      el("td", { class: "name" }, el("a", { href: envHref(row.name) }, row.name)),
      el("td", { class: "observed" }, stateBadge(row.corrupt ? "corrupt" : row.observed)),
      el("td", { class: "desired" }, row.desired || (row.declared === false ? el("span", { class: "muted" }, "not declared") : "")),
      el("td", { class: "converged" }, convergedCell(row)),
      el("td", { class: "drift" }, driftCell(row.drift, row.suspended)),
      el("td", { class: "lock-cell" }, lockCell(row.lock)),
      el("td", { class: "last" }, transitionCell(row.lastTransition)),
      el("td", { class: "failure-cell" }, failureCell(row.failure, row.problems)));
    const signature = JSON.stringify(row);
    tr.dataset.signature = signature;
    if (previous && previous !== signature) tr.classList.add("changed");
    return tr;
  }

  async function loadFleet() {
    const query = fleetQuery();
    const params = new URLSearchParams({ limit: String(query.limit), offset: String(query.offset) });
    for (const key of ["selector", "state", "name"]) if (query[key]) params.set(key, query[key]);
    let body;
    try {
      body = await getJSON(API + "/environments?" + params.toString());
    } catch (error) {
      showError(error);
      if (error.status >= 400 && error.status < 500) {
        // The filter was refused: no rows answer it. (A server that is away keeps the last rows.)
        for (const id of ["fleet-rows", "counts", "pager"]) {
          byId(id).replaceChildren();
          delete byId(id).dataset.signature;
        }
      }
      return;
    }
    showError(null);
    const rows = body.environments || [];
    const total = typeof body.total === "number" ? body.total : rows.length;
    // Only what changed is replaced: a row, the counts or the pager that did not change stays
    // the same element (no flicker, and a selection or a hover survives a refresh).
    unlessSame(byId("counts"), [body.counts, total, query], () => renderCounts(body.counts, total, query));
    const tbody = byId("fleet-rows");
    const before = new Map();
    for (const tr of tbody.rows) if (tr.dataset.name !== undefined) before.set(tr.dataset.name, tr);
    const fresh = rows.map((row) => {
      const old = before.get(row.name);
      return old && old.dataset.signature === JSON.stringify(row) ? old : fleetRow(row, old && old.dataset.signature);
    });
    if (fresh.length === 0) {
      fresh.push(el("tr", { class: "empty" }, el("td", { colspan: "8" }, "No environment matches.")));
    }
    const same = fresh.length === tbody.rows.length && fresh.every((tr, i) => tr === tbody.rows[i]);
    if (!same) tbody.replaceChildren(...fresh);
    unlessSame(byId("pager"), [query, total, rows.length], () => renderPager(query, total, rows.length));
    document.body.dataset.loaded = String((Number(document.body.dataset.loaded) || 0) + 1);
    if (!performance.getEntriesByName("fleet-rendered").length) performance.mark("fleet-rendered");
  }

  function renderPager(query, total, shown) {
    const pager = byId("pager");
    const first = shown ? query.offset + 1 : 0;
    const last = query.offset + shown;
    const previous = el("button", { type: "button", disabled: query.offset === 0 }, "← previous");
    const next = el("button", { type: "button", disabled: last >= total }, "next →");
    previous.addEventListener("click", () => navigate({ ...query, offset: Math.max(0, query.offset - query.limit) }));
    next.addEventListener("click", () => navigate({ ...query, offset: query.offset + query.limit }));
    replace(pager, previous, el("span", { class: "range" }, first + "–" + last + " of " + total), next);
  }

  let refreshFleet = () => {};

  function fleetPage() {
    const form = byId("filters");
    const stateSelect = byId("filter-state");
    for (const state of STATES) stateSelect.appendChild(el("option", { value: state }, state));
    stateSelect.appendChild(el("option", { value: "none" }, "not observed"));
    stateSelect.appendChild(el("option", { value: "corrupt" }, "corrupt state.json"));
    const fill = () => {
      const query = fleetQuery();
      form.elements.selector.value = query.selector;
      form.elements.name.value = query.name;
      stateSelect.value = query.state;
    };
    fill();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      navigate({
        ...fleetQuery(),
        selector: form.elements.selector.value.trim(),
        state: stateSelect.value,
        name: form.elements.name.value.trim(),
        offset: 0,
      });
    });
    stateSelect.addEventListener("change", () => form.requestSubmit());
    window.addEventListener("popstate", () => {
      fill();
      refreshFleet();
    });
    refreshFleet = coalesced(loadFleet);
    onStateCommit = () => refreshFleet();
    refreshFleet();
  }

  // -- GET /environments/NAME ---------------------------------------------------------------

  function environmentName() {
    const prefix = "/environments/";
    const path = window.location.pathname;
    return path.startsWith(prefix) ? decodeURIComponent(path.slice(prefix.length)) : "";
  }

  function definitionList(entries) {
    const dl = el("dl", {});
    for (const [term, value] of entries) {
      if (value === null || value === undefined || value === "") continue;
      append(dl, [el("dt", {}, term), el("dd", {}, value)]);
    }
    return dl;
  }

  function section(id, title, ...content) {
    const box = byId(id);
    replace(box, el("h2", {}, title), ...content);
    box.hidden = false;
  }

  function hide(id) {
    byId(id).hidden = true;
  }

  function commitLink(sha, url) {
    if (!sha) return "";
    const text = el("code", { title: String(sha) }, shortSha(sha));
    return url ? el("a", { href: url }, text) : text;
  }

  function tags(map) {
    const entries = Object.entries(map || {});
    return entries.length ? entries.map(([k, v]) => [el("span", { class: "tag" }, k + "=" + v), " "]) : "";
  }

  function phaseRows(env, state) {
    if (Array.isArray(env.phases)) return env.phases.map((p) => [p.phase, p]);
    return Object.entries((state && state.phases) || {});
  }

  function traceBlock(trace) {
    if (!trace) return "";
    if (typeof trace === "string") return el("pre", { class: "trace" }, trace);
    return [
      el("h3", {}, "Trace", trace.truncated ? el("span", { class: "muted" }, " (its end)") : ""),
      trace.content !== null && trace.content !== undefined
        ? el("pre", { class: "trace" }, trace.content)
        : el("p", { class: "muted" }, "The trace cannot be shown: " + (trace.error || "it is not on this host")),
    ];
  }

  function renderEnvironment(body, history) {
    const env = body.environment || body;
    const state = env.state && typeof env.state === "object" ? env.state : {};
    const spec = env.spec || {};
    const name = env.name || environmentName();
    document.title = name + " · reconciler";
    replace(byId("env-name"), name);
    section("summary", "Summary", definitionList([
      ["observed", stateBadge(env.corrupt ? "corrupt" : env.observed || state.state)],
      ["desired", env.desired || spec.desiredState || ""],
      ["converged", env.converged === undefined ? "" : convergedCell(env)],
      ["why", env.reason],
      ["next step", env.nextStep],
      ["desired commit", commitLink(env.desiredCommit || state.desiredCommit, env.desiredCommitUrl)],
      ["updated", time(env.updatedAt || state.updatedAt)],
      ["lock", lockCell(env.lock !== undefined ? env.lock : state.lock)],
      ["labels", tags(env.labels)],
      ["file", spec.path],
      ["blueprint", spec.blueprint],
      ["depends on", (spec.dependsOn || []).join(", ")],
      ["protected", spec.protected ? "yes: never destroyed or pruned" : ""],
      ["problems", (env.problems || []).length ? (env.problems || []).map((p) => el("div", { class: "failure" }, p)) : ""],
    ]));

    const phases = phaseRows(env, state);
    if (phases.length) {
      section("phases", "Phases", el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "phase"), el("th", {}, "input hash"), el("th", {}, "completed"))),
        el("tbody", {}, phases.map(([phase, done]) => el("tr", { "data-phase": phase },
          el("td", {}, phase),
          el("td", {}, el("code", { title: done.hash || "" }, shortSha(done.hash))),
          el("td", {}, done.completedAt ? [when(done.completedAt), " ", el("span", { class: "muted" }, "(" + ago(done.completedAt) + ")")] : ""))))));
    } else hide("phases");

    const outputs = Object.entries(env.outputs || state.outputs || {});
    if (outputs.length) {
      section("outputs", "Outputs", definitionList(outputs.map(([k, v]) => [k, el("code", {}, typeof v === "string" ? v : JSON.stringify(v))])));
    } else hide("outputs");

    const failure = env.failure || state.failure;
    if (failure && typeof failure === "object") {
      section("failure", "Failure",
        definitionList([
          ["phase", failure.phase],
          ["failed step", failure.failedStep],
          ["error kind", failure.errorKind],
          ["summary", failure.errorSummary],
          ["attempt", failure.attempt],
          ["started", when(failure.executionStartedAt)],
          ["failed", when(failure.failedAt)],
          ["duration", failure.executionDurationSeconds !== undefined && failure.executionDurationSeconds !== null ? failure.executionDurationSeconds + " s" : ""],
          ["trace id", failure.traceId],
          ["trace file", failure.traceFile],
        ]),
        traceBlock(failure.trace));
    } else hide("failure");

    const drift = env.drift || state.drift;
    const suspended = env.suspended || state.suspended;
    if (drift || suspended) {
      section("drift", "Drift and suspension",
        drift ? definitionList([
          ["drift", el("span", { class: "tag tag-drift-" + drift.status }, drift.status)],
          ["phase", drift.phase], ["step", drift.step], ["summary", drift.summary],
          ["checked", when(drift.checkedAt)], ["since", when(drift.since)],
        ]) : "",
        suspended ? definitionList([
          ["suspended by", suspended.by], ["at", when(suspended.at)], ["reason", suspended.reason],
        ]) : "");
    } else hide("drift");

    const items = (history && (history.events || history.history)) || [];
    let older = "";
    if (items.length >= historyLimit && historyLimit < MAX_HISTORY) {
      older = el("button", { type: "button", class: "older" }, "older events…");
      older.addEventListener("click", () => {
        historyLimit = Math.min(MAX_HISTORY, historyLimit * 4);
        refreshEnvironment();
      });
    }
    section("history", "History", items.length
      ? el("ol", { class: "timeline" }, items.map(historyItem))
      : el("p", { class: "muted" }, "No transition recorded yet."), older);
  }

  function historyItem(item) {
    const from = item.from !== undefined ? item.from : item.fromState;
    const to = item.to !== undefined ? item.to : item.toState;
    const event = item.event || "transition";
    const what = event === "transition" || from !== to ? [stateBadge(from), " → ", stateBadge(to)] : [el("span", { class: "tag" }, event), " ", stateBadge(to)];
    return el("li", { "data-event": event },
      el("div", { class: "when" }, when(item.at)),
      el("div", { class: "what" }, what),
      el("div", { class: "who muted" },
        item.actor ? "by " + item.actor : "",
        item.desiredCommit ? [" · desired ", commitLink(item.desiredCommit, item.desiredCommitUrl)] : ""),
      item.detail ? el("pre", { class: "detail" }, item.detail) : "");
  }

  async function loadEnvironment() {
    const name = environmentName();
    const base = API + "/environments/" + encodeURIComponent(name);
    let env;
    let history;
    try {
      [env, history] = await Promise.all([getJSON(base), getJSON(base + "/history?limit=" + historyLimit)]);
    } catch (error) {
      showError(error);
      replace(byId("env-name"), name);
      return;
    }
    showError(null);
    unlessSame(document.querySelector("main"), [env, history], () => renderEnvironment(env, history));
    document.body.dataset.loaded = String((Number(document.body.dataset.loaded) || 0) + 1);
  }

  let historyLimit = 50;
  const MAX_HISTORY = 1000; // the API's most
  let refreshEnvironment = () => {};

  function environmentPage() {
    refreshEnvironment = coalesced(loadEnvironment);
    const name = environmentName();
    onStateCommit = (data) => {
      const about = data && (data.environment || data.name);
      if (!about || about === name) refreshEnvironment();
    };
    refreshEnvironment();
  }

  // "3 min ago" stays true on a page nobody refreshes.
  function tickTimes() {
    for (const node of document.querySelectorAll("time[datetime]")) {
      const text = ago(node.getAttribute("datetime"));
      if (text && node.textContent !== text) node.textContent = text;
    }
  }

  // -- start ------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    setUpTokenForm();
    window.setInterval(tickTimes, 15000);
    const page = document.body.dataset.page;
    if (page === "fleet") fleetPage();
    else if (page === "environment") environmentPage();
    reconnectEvents();
  });
})();
