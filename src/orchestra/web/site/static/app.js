// Orchestra's website script: theme switch, confirmations, and the live run page.
// Small and hand-written on purpose; the pages work without it.
"use strict";

(function theme() {
  const saved = localStorage.getItem("orchestra-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", () => {
      const dark = document.documentElement.dataset.theme
        ? document.documentElement.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      const next = dark ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      localStorage.setItem("orchestra-theme", next);
    });
  });
})();

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

document.addEventListener("change", (event) => {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) {
    field.form.submit();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (!run) return;
  const base = `/projects/${encodeURIComponent(run.dataset.project)}/runs/${encodeURIComponent(run.dataset.run)}`;
  const logs = Array.from(document.querySelectorAll("pre.log[data-step]"));
  const state = logs.map((pre) => ({
    pre,
    step: Number(pre.dataset.step),
    offset: Number(pre.dataset.size || 0),
    decoder: new TextDecoder(),
    active: false,
  }));
  let final = run.dataset.final === "true";
  let lastStatus = null;

  function statusBadge(value) {
    const span = document.createElement("span");
    span.className = `status s-${value}`;
    span.textContent = value;
    return span;
  }

  async function pollState() {
    const response = await fetch(`${base}/state`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    if (data.status !== lastStatus) {
      document.getElementById("run-status").replaceChildren(statusBadge(data.status));
      // Only the action that fits the status is offered: cancel while pending, abort while running.
      const cancel = document.getElementById("cancel-form");
      const abort = document.getElementById("abort-form");
      if (cancel) cancel.hidden = data.status !== "pending";
      if (abort) abort.hidden = data.status !== "running";
      const rerun = document.getElementById("rerun-form");
      if (rerun) rerun.hidden = !data.final;
      lastStatus = data.status;
    }
    const waiting = document.getElementById("waiting");
    if (waiting && data.status !== "pending") waiting.remove();
    document.getElementById("run-duration").textContent = data.duration;
    const started = document.getElementById("run-started");
    if (data.started_utc && started.dataset.utc !== data.started_utc) {
      // A <time> in UTC, as the server writes it: static/times.js shows it in local time.
      const time = document.createElement("time");
      time.setAttribute("datetime", data.started_utc);
      time.title = time.textContent = data.started;
      started.dataset.utc = data.started_utc;
      started.replaceChildren(time);
    }
    for (const step of data.steps) {
      const item = document.getElementById(`step-${step.index}`);
      if (!item) continue;
      item.querySelector(".step-status").replaceChildren(statusBadge(step.status));
      item.querySelector(".step-duration").textContent = step.duration;
      const inline = document.querySelector(`#log-step-${step.index} .step-status-inline`);
      if (inline) inline.replaceChildren(statusBadge(step.status));
      if (state[step.index]) state[step.index].active = step.status !== "pending";
    }
    final = data.final;
  }

  async function pollLog(entry) {
    const response = await fetch(`${base}/log?step=${entry.step}&offset=${entry.offset}`);
    if (!response.ok) return;
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length === 0) return;
    entry.offset += bytes.length;
    const atBottom = entry.pre.scrollHeight - entry.pre.scrollTop - entry.pre.clientHeight < 40;
    entry.pre.append(document.createTextNode(entry.decoder.decode(bytes, { stream: true })));
    if (atBottom) entry.pre.scrollTop = entry.pre.scrollHeight;
  }

  // The live event stream (static/live.js) says when the run changed: its state is read
  // again then, not every half second; while the stream is down, it is polled.
  let changed = true;
  let timer = null;
  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  }
  const live = window.orchestraLive
    ? window.orchestraLive({ project: run.dataset.project }, (type, data) => {
        if (type === "open" || type === "reset" || (data && data.identifier === run.dataset.run)) {
          changed = true;
          if (!final) schedule(0);
        }
      })
    : null;
  const streaming = () => live !== null && live.healthy();

  async function tick() {
    try {
      const wasFinal = final;
      if (changed || !streaming()) {
        changed = false;
        await pollState();
      }
      for (const entry of state) {
        if (entry.active || final) await pollLog(entry);
      }
      if (wasFinal && final) return; // one last pass after the run ended
    } catch (error) {
      // A failed poll (server restarting) is retried at the next tick.
    }
    schedule(streaming() && !state.some((entry) => entry.active) ? 10000 : 500);
  }
  tick();
});

// The live pipeline run page: its status, graph and nodes, fetched again (server-rendered and
// escaped) every second and a half until the pipeline run and its nodes are final. A form being
// filled in (an approval's comment) is never replaced under the user's hands.
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("pipeline-run-live");
  if (!live) return;
  const url = `/projects/${encodeURIComponent(live.dataset.project)}/pipeline-runs/${encodeURIComponent(live.dataset.run)}/live`;
  let final = live.dataset.final === "true";
  // Drawn again when the live event stream (static/live.js) says the pipeline run or one of
  // its runs changed; polled every second and a half only while the stream is down.
  let changed = false;
  let timer = null;
  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  }
  const stream = window.orchestraLive
    ? window.orchestraLive({ project: live.dataset.project }, (type, data) => {
        const ours =
          data && (data.identifier === live.dataset.run || data.pipeline_run === live.dataset.run);
        if (type === "open" || type === "reset" || ours) {
          changed = true;
          schedule(100); // a burst of events draws the page once
        }
      })
    : null;
  const streaming = () => stream !== null && stream.healthy();
  async function tick() {
    if (final) return;
    try {
      const active = document.activeElement;
      if (!(active && live.contains(active) && active.tagName === "INPUT")) {
        if (changed || !streaming()) {
          changed = false;
          const response = await fetch(url, { headers: { Accept: "text/html" } });
          if (response.ok) {
            const html = await response.text();
            const parsed = new DOMParser().parseFromString(html, "text/html");
            live.replaceChildren(...parsed.body.childNodes);
            final = !live.querySelector(".s-running, .s-pending, .s-waiting");
          }
        }
      } else if (changed) {
        schedule(1500); // after the form: drawn again then
        return;
      }
    } catch (error) {
      // A failed poll (server restarting) is retried at the next tick.
    }
    schedule(streaming() ? 15000 : 1500);
  }
  schedule(1500);
});
