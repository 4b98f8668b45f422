// The website's live pages follow the live event stream (GET /api/v1/events, server-sent
// events, with the session cookie: a token never goes in a URL) instead of polling.
// `orchestraLive(params, onEvent)` opens the stream and calls onEvent(type, data) for each
// event, and onEvent("open") at each (re)connection (what happened while it was down is read
// again by the page). The browser reconnects by itself with Last-Event-ID. `healthy()` says
// whether the stream is up: while it is not, the pages poll as they did before it.
// The project, workers and worker pages are drawn again (by the server: escaped) when an event
// concerns them; nothing is replaced while a form in the page is being filled in.
"use strict";

window.orchestraLive = function orchestraLive(params, onEvent) {
  const state = { up: false, source: null };
  const types = [
    "run.created",
    "run.updated",
    "pipeline_run.created",
    "pipeline_run.updated",
    "worker.updated",
    "schedule.fired",
    "reset",
  ];
  if (typeof EventSource === "undefined") return { healthy: () => false };
  try {
    const query = new URLSearchParams(params || {}).toString();
    const source = new EventSource(`/api/v1/events${query ? `?${query}` : ""}`);
    state.source = source;
    source.addEventListener("open", () => {
      state.up = true;
      onEvent("open", null);
    });
    source.addEventListener("error", () => {
      // Reconnecting (EventSource does) or closed for good (a 4xx): the page polls meanwhile.
      state.up = false;
    });
    for (const type of types) {
      source.addEventListener(type, (event) => {
        let data = null;
        try {
          data = JSON.parse(event.data);
        } catch (error) {
          data = null;
        }
        onEvent(type, data);
      });
    }
  } catch (error) {
    return { healthy: () => false };
  }
  window.addEventListener("pagehide", () => state.source && state.source.close());
  return { healthy: () => state.up };
};

// The project, workers and worker pages: drawn again when an event concerns them.
document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("main");
  if (!main) return;
  const path = window.location.pathname;
  let params = null;
  let concerns = null;
  const project = path.match(/^\/projects\/([^/]+)\/?$/);
  const worker = path.match(/^\/workers\/([^/]+)\/?$/);
  if (project) {
    const name = decodeURIComponent(project[1]);
    params = { project: name };
    concerns = (type, data) => type !== "worker.updated" && (!data || data.project === name);
  } else if (/^\/workers\/?$/.test(path)) {
    params = {};
    concerns = (type) => type === "worker.updated";
  } else if (worker) {
    const name = decodeURIComponent(worker[1]);
    params = {};
    concerns = (type, data) => type === "worker.updated" && (!data || data.identifier === name);
  } else {
    return;
  }
  let timer = null;
  let busy = false;
  async function redraw() {
    timer = null;
    const active = document.activeElement;
    if (busy || (active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName))) {
      timer = setTimeout(redraw, 1000);
      return;
    }
    busy = true;
    try {
      const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (response.ok) {
        const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = parsed.getElementById("main");
        if (fresh) {
          main.replaceChildren(...fresh.childNodes);
          main.dataset.liveUpdates = String(Number(main.dataset.liveUpdates || 0) + 1);
        }
      }
    } catch (error) {
      // The server restarting: the next event draws the page again.
    } finally {
      busy = false;
    }
  }
  let opened = 0;
  window.orchestraLive(params, (type, data) => {
    if (type === "open") {
      opened += 1;
      if (opened === 1) return; // the page was just drawn
    } else if (type !== "reset" && !concerns(type, data)) {
      return;
    }
    // Many events in a burst draw the page once (at most about once a second).
    if (timer === null) timer = setTimeout(redraw, 1000);
  });
});
