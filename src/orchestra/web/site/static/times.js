// Dates in the viewer's time zone. The server writes each date as
// <time datetime="2026-12-06T08:51:09Z" title="2026-12-06 08:51:09 UTC">2026-12-06 08:51:09 UTC</time>:
// without scripts it reads in UTC; with this one its text becomes the same moment in the browser's
// time zone ("2026-12-06 09:51:09 CET"), and its title (shown on hover) stays in UTC. Dates that
// arrive later (a live fragment, a run that starts) are turned as they are added.
"use strict";

(function localTimes() {
  let cached = null; // one formatter per page

  function formatter() {
    cached = cached || new Intl.DateTimeFormat("en-CA", {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
      hourCycle: "h23", timeZoneName: "short",
    });
    return cached;
  }

  function local(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return null;
    const parts = {};
    for (const part of formatter().formatToParts(date)) parts[part.type] = part.value;
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName}`;
  }

  function turn(root) {
    const found = root.matches && root.matches("time[datetime]") ? [root] : [];
    if (root.querySelectorAll) found.push(...root.querySelectorAll("time[datetime]"));
    for (const element of found) {
      if (element.dataset.local === element.getAttribute("datetime")) continue;
      const text = local(element.getAttribute("datetime"));
      if (text === null) continue;
      if (!element.title) element.title = element.textContent;
      element.textContent = text;
      element.dataset.local = element.getAttribute("datetime");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    turn(document.body);
    new MutationObserver((changes) => {
      for (const change of changes) {
        for (const node of change.addedNodes) {
          if (node.nodeType === Node.ELEMENT_NODE) turn(node);
        }
      }
    }).observe(document.body, { childList: true, subtree: true });
  });
})();
