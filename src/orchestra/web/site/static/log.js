// The run page's log (web/site/logview.py): new lines of a running run, drawn by the server
// (escaped text, colours as classes) and fetched a step at a time, in order, so that each
// step's lines are numbered after the steps before it; and the "Show times" switch.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("log");
  const run = document.getElementById("run");
  if (!section || !run) return;

  // Each line's time, written by the server in UTC to the millisecond, shown in the viewer's
  // time zone (the UTC time stays in its title, shown on hover).
  const clock = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hourCycle: "h23",
  });
  const day = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit" });
  function localTimes(root) {
    for (const element of root.querySelectorAll(".lt[data-utc]")) {
      const date = new Date(element.dataset.utc);
      if (!element.dataset.utc || Number.isNaN(date.getTime())) continue;
      element.textContent = `${day.format(date)} ${clock.format(date)}`;
      element.removeAttribute("data-utc");
    }
  }
  const times = document.getElementById("log-times");
  if (times) {
    times.addEventListener("change", () => {
      if (times.checked) localTimes(section);
      section.classList.toggle("show-times", times.checked);
    });
    if (times.checked) localTimes(section);
  }
  if (section.dataset.search === "true") return; // a search shows what it found, not more

  const base = `/projects/${encodeURIComponent(run.dataset.project)}/runs/${encodeURIComponent(run.dataset.run)}`;
  const steps = Array.from(section.querySelectorAll("pre.log[data-log-step]")).map((pre) => ({
    pre,
    step: Number(pre.dataset.logStep),
    offset: Number(pre.dataset.size || 0),
    done: pre.dataset.done === "true",
  }));
  let line = Number(section.dataset.nextLine || 1);
  let style = section.dataset.style || "";

  async function fetchStep(entry) {
    const query = new URLSearchParams({
      step: String(entry.step),
      offset: String(entry.offset),
      line: String(line),
      style,
    });
    const response = await fetch(`${base}/log/lines?${query}`, { headers: { Accept: "application/json" } });
    if (!response.ok) return false;
    const data = await response.json();
    if (data.html) {
      const pre = entry.pre;
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
      // The server's rendering: the log's text escaped, in spans of its own.
      const parsed = new DOMParser().parseFromString(`<pre>${data.html}</pre>`, "text/html");
      const lines = parsed.body.firstChild;
      if (section.classList.contains("show-times")) localTimes(lines);
      pre.append(...lines.childNodes);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      const target = window.location.hash && document.getElementById(window.location.hash.slice(1));
      if (target && pre.contains(target) && !target.dataset.seen) {
        target.dataset.seen = "true";
        target.scrollIntoView({ block: "center" });
      }
    }
    entry.offset = data.offset;
    line = data.line;
    style = data.style;
    entry.done = data.done;
    return entry.done;
  }

  async function tick() {
    try {
      for (const entry of steps) {
        if (entry.done) continue;
        if (!(await fetchStep(entry))) break; // a step's lines come before the next one's
      }
    } catch (error) {
      // A failed poll (a server restarting) is tried again at the next tick.
    }
    if (steps.some((entry) => !entry.done)) setTimeout(tick, 700);
  }
  if (steps.some((entry) => !entry.done)) tick();
});
