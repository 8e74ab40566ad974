// pxelab status page: live updates over server-sent events; the page works without this file.
"use strict";
(function () {
  const live = document.getElementById("live");
  let refreshTimer = null;

  function setLive(on) {
    live.textContent = on ? "live" : "reconnecting…";
    live.className = "live " + (on ? "on" : "off");
    live.title = on ? "Updates arrive as machines boot" : "Waiting for the server";
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function trim(list) {
    const limit = parseInt(list.dataset.limit || "50", 10);
    while (list.children.length > limit) list.lastElementChild.remove();
  }

  function tick() {
    const now = Date.now() / 1000;
    for (const el of document.querySelectorAll(".ago[data-time]")) {
      const s = Math.max(0, Math.floor(now - parseFloat(el.dataset.time)));
      el.textContent = s < 60 ? s + " s ago" : s < 3600 ? Math.floor(s / 60) + " min ago"
        : s < 86400 ? Math.floor(s / 3600) + " h ago" : Math.floor(s / 86400) + " d ago";
    }
    const clock = document.getElementById("now");
    if (clock) clock.textContent = new Date().toISOString().slice(11, 19);
  }

  // Re-read the whole snapshot: for new hosts, after a reconnect, and now and then for changes
  // that make no boot event (host files edited, `pxelab hosts reinstall` from the CLI, assets).
  async function refresh() {
    refreshTimer = null;
    try {
      const response = await fetch("/", { cache: "no-store" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("main");
      const open = new Set([...document.querySelectorAll("details[open][id]")].map((d) => d.id));
      const closed = new Set([...document.querySelectorAll("details.timeline:not([open])")].map((d) => d.id));
      document.getElementById("main").replaceWith(fresh);
      for (const d of fresh.querySelectorAll("details[id]")) {
        if (open.has(d.id)) d.open = true;
        if (closed.has(d.id)) d.open = false;
      }
    } catch (err) {
      /* the server is away: the stream's reconnect brings us back */
    }
  }

  function scheduleRefresh(delay) {
    if (refreshTimer === null) refreshTimer = setTimeout(refresh, delay);
  }

  function apply(m) {
    if (m.problem) {
      const problems = document.getElementById("problems");
      problems.prepend(fragment(m.problem));
      trim(problems);
      const none = document.querySelector("#errors .none");
      if (none) none.remove();
    }
    if (!m.key) return;
    const row = document.getElementById("host-" + m.key);
    if (!row || (row.closest("#unknown") !== null) === m.known) {
      scheduleRefresh(300); // a host or machine this page does not list yet, or lists elsewhere
      return;
    }
    const fresh = fragment(m.row);
    fresh.classList.add("flash");
    if (m.stage !== "reinstall" && row.querySelector("details.confirm[open]")) {
      fresh.querySelector("details.confirm").open = true; // keep an operator's open confirm
    }
    row.replaceWith(fresh);
    const timeline = document.getElementById("tl-" + m.key);
    if (timeline) {
      const list = timeline.querySelector("ol.events");
      list.prepend(fragment(m.item));
      trim(list);
      const fresher = fragment(m.timeline);
      timeline.querySelector(".count").replaceWith(fresher.querySelector(".count"));
      timeline.querySelector(".steps").replaceWith(fresher.querySelector(".steps"));
    } else {
      const section = document.getElementById("timelines");
      const empty = section.querySelector(":scope > p.muted:last-child");
      if (empty) empty.remove();
      section.querySelector("h2 + p").after(fragment(m.timeline));
    }
  }

  function connect() {
    if (!window.EventSource) {
      setInterval(refresh, 5000); // no SSE: poll the snapshot
      live.textContent = "polling";
      return;
    }
    const source = new EventSource("/status/events");
    let wasOpen = false;
    source.addEventListener("hello", () => {
      if (wasOpen) scheduleRefresh(0); // events may have been missed while away
      wasOpen = true;
      setLive(true);
    });
    source.addEventListener("boot", (e) => apply(JSON.parse(e.data)));
    source.addEventListener("error", () => setLive(false));
  }

  // With JavaScript the reinstall form (session cookie and CSRF token) posts in the background
  // and the page stays; the row changes when the server's `reinstall` event arrives.
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.classList || !form.classList.contains("reinstall")) return;
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      button.textContent = response.ok ? "Done: " + form.dataset.name + " reinstalls at its next boot"
        : "Failed: " + (await response.text()).trim();
      if (response.ok) scheduleRefresh(1500);
    } catch (err) {
      button.textContent = "Failed: the server did not answer";
      button.disabled = false;
    }
  });

  connect();
  tick();
  setInterval(tick, 1000);
  setInterval(() => scheduleRefresh(0), 30000);
})();
