/* Live updates for the MockForge analytics pages (progressive enhancement: pages work without it).
 * Connects to <mount>/api/stream (path from <body data-ws-path>), sends the page's filters as the
 * stream's JSON config, updates the cards on every message and re-fetches the chart fragments
 * when the numbers change. Reconnects with backoff 1 s doubling to 30 s; a toggle pauses it. */
(function () {
  "use strict";
  var body = document.body;
  /* Blank filter fields stay out of the URL, so a shared link holds only what was chosen. */
  document.querySelectorAll("form.filters").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[name], select[name]").forEach(function (field) {
        if (field.value === "") { field.disabled = true; }
      });
    });
  });
  /* On a phone the filter bar starts folded unless a filter is set (its summary says which). */
  var box0 = document.getElementById("filters-box");
  if (box0 && window.matchMedia("(max-width: 600px)").matches && !box0.querySelector(".muted")) {
    box0.open = false;
  }
  var path = body.getAttribute("data-ws-path");
  if (!path || !("WebSocket" in window)) { return; }
  var filters = {};
  try { filters = JSON.parse(body.getAttribute("data-filters") || "{}"); } catch (e) { filters = {}; }
  var box = document.getElementById("live");
  var stateEl = document.getElementById("live-state");
  var toggle = document.getElementById("live-toggle");
  var MIN_BACKOFF = 1000, MAX_BACKOFF = 30000, FRAGMENT_EVERY = 5000;
  var backoff = MIN_BACKOFF, socket = null, timer = null, paused = false;
  var lastTotal = null, dirty = false, lastFragment = 0, fetching = false;

  function setState(cls, text) {
    stateEl.className = "live-state " + cls;
    stateEl.textContent = text;
  }

  function format(value, unit) {
    if (value === null || value === undefined || (typeof value === "number" && isNaN(value))) { return "\u2013"; }
    var v = Number(value), text;
    if (Number.isInteger(v)) { text = v.toLocaleString("en-US"); }
    else if (Math.abs(v) >= 100) { text = Math.round(v).toLocaleString("en-US"); }
    else if (Math.abs(v) >= 10) { text = v.toFixed(1); }
    else if (Math.abs(v) >= 1) { text = v.toFixed(2).replace(/0+$/, "").replace(/\.$/, ""); }
    else { text = String(Number(v.toPrecision(2))); }
    if (!unit) { return text; }
    return unit === "%" ? text + "%" : text + " " + unit;
  }

  function level(thresholds, value) {
    if (!thresholds || value === null || value === undefined) { return ""; }
    var parts = thresholds.split(",").map(Number);
    return value < parts[0] ? "good" : value < parts[1] ? "warn" : "bad";
  }

  function applyOverview(data) {
    var hasTraffic = !!data.total_requests;
    document.querySelectorAll("output[data-metric]").forEach(function (out) {
      var key = out.getAttribute("data-metric");
      if (!(key in data)) { return; }
      var value = data[key];
      if (!hasTraffic && /_ms$/.test(key)) { value = null; }
      out.textContent = format(value, out.getAttribute("data-unit"));
      var card = out.closest(".card");
      if (card && card.hasAttribute("data-thresholds")) {
        card.classList.remove("good", "warn", "bad");
        var lv = level(card.getAttribute("data-thresholds"), value);
        if (lv) { card.classList.add(lv); }
      }
    });
    if (lastTotal !== null && data.total_requests !== lastTotal) { dirty = true; }
    lastTotal = data.total_requests;
    if (dirty && Date.now() - lastFragment > FRAGMENT_EVERY) { refreshFragments(); }
  }

  /* Re-render server-drawn parts (charts, tables) by fetching this same URL. */
  function refreshFragments() {
    if (fetching || !document.querySelector("[data-live-fragment]")) { return; }
    fetching = true; dirty = false; lastFragment = Date.now();
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-fragment]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && el.id !== "cards") { el.replaceWith(document.importNode(fresh, true)); }
        });
      })
      .catch(function () { /* the next change retries */ })
      .then(function () { fetching = false; });
  }

  function config() {
    var cfg = { interval_seconds: 1 };
    /* the stream takes the window as duration_seconds and every series filter by name */
    Object.keys(filters).forEach(function (k) { if (k !== "duration") { cfg[k] = filters[k]; } });
    if (filters.duration) { cfg.duration_seconds = Number(filters.duration); }
    return cfg;
  }

  function connect() {
    if (paused) { return; }
    /* ws: or wss: like the page; the filters ride in the query too, so even the first message uses them */
    var cfg = config(), query = Object.keys(cfg).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(cfg[k]);
    }).join("&");
    var url = location.protocol.replace("http", "ws") + "//" + location.host + path + "?" + query;
    setState("connecting", "connecting\u2026");
    try { socket = new WebSocket(url); } catch (e) { schedule(); return; }
    socket.onopen = function () {
      backoff = MIN_BACKOFF;
      setState("connected", "live");
      socket.send(JSON.stringify(config()));
    };
    socket.onmessage = function (event) {
      if (paused) { return; }
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg && (msg.type === "error" || msg.success === false)) {
        setState("reconnecting", "live error: " + (msg.error || "unknown"));
        return;
      }
      var data = msg && typeof msg.data === "object" && msg.data !== null ? msg.data : msg;
      if (data && typeof data === "object") { applyOverview(data); }
    };
    socket.onclose = function (event) {
      socket = null;
      if (paused) { return; }
      if (event.code === 4401) { setState("reconnecting", "log in for live updates"); return; }
      schedule();
    };
    socket.onerror = function () { /* onclose follows and schedules the retry */ };
  }

  function schedule() {
    var wait = backoff;
    backoff = Math.min(backoff * 2, MAX_BACKOFF);
    setState("reconnecting", "reconnecting in " + Math.round(wait / 1000) + " s");
    clearTimeout(timer);
    timer = setTimeout(connect, wait);
  }

  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    toggle.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      clearTimeout(timer);
      if (socket) { socket.close(1000, "paused"); }
      setState("paused", "paused");
    } else {
      backoff = MIN_BACKOFF;
      connect();
    }
  });

  if (document.querySelector(".error-state")) { return; }  /* nothing live to show on an error page */
  box.hidden = false;
  connect();
})();
