/* The trace fabric's pages: the waterfall's layout, the step-by-step replay, live updates
   over a websocket (htmx polling when it is closed), and the live fleet.

   The layout repeats apps/traces/timeline.py: spans nest under their parent span, a decision
   under the latest-started span still open when it was made; bars are placed by start and
   duration relative to the earliest step. The server lays out the first render the same way,
   so the page reads correctly before (and without) this script. */
(function () {
  "use strict";

  var TYPE_ORDER = { request: 0, identity: 1, audit: 2, span: 3, decision: 4, outcome: 9 };
  var FRAME_RANK = { request: -2, identity: -1, outcome: 1 };
  var MIN_BAR = 0.4;
  var CLOSED_FOR_GOOD = { 4400: "Not live: reload the page", 4401: "Not live: sign in again", 4403: "Not live: you may no longer see this", 4404: "Not live: not found" };
  var RETRY_MS = [1000, 2000, 4000, 8000, 15000];

  var live = (window.tetherLive = { polling: false, cursor: "" });

  function $(selector, root) { return (root || document).querySelector(selector); }
  function all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  function duration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms === 0) return "0";
    if (ms < 1) return Math.round(ms * 1000) + " µs";
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60);
    s = Math.floor(s % 60);
    if (m < 60) return m + " min " + s + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function tickRunning() {
    var now = Date.now() / 1000;
    all("[data-running-since]").forEach(function (el) {
      el.textContent = duration((now - Number(el.getAttribute("data-running-since"))) * 1000);
    });
  }

  // --- the waterfall ------------------------------------------------------------------------

  function num(row, name) {
    var value = row.getAttribute("data-" + name);
    return value === null ? null : Number(value);
  }

  function layout(list, running) {
    var rows = Array.prototype.slice.call(list.children);
    if (!rows.length) return;
    var spans = {};
    rows.forEach(function (row) { if (row.dataset.span) spans[row.dataset.span] = row; });
    var depths = {};
    Object.keys(spans).forEach(function (key) {
      var chain = [], onChain = {};
      while (spans[key] && !(key in depths) && !onChain[key]) {
        chain.push(key);
        onChain[key] = true;
        key = spans[key].dataset.parent || "";
      }
      var depth = key in depths ? depths[key] : -1;
      for (var i = chain.length - 1; i >= 0; i--) { depth += 1; depths[chain[i]] = depth; }
    });
    var depthOf = new Map();
    rows.forEach(function (row) { depthOf.set(row, row.dataset.span ? depths[row.dataset.span] || 0 : 0); });

    var ordered = Object.keys(spans).map(function (k) { return spans[k]; }).sort(function (a, b) {
      return num(a, "start") - num(b, "start") || depthOf.get(a) - depthOf.get(b);
    });
    rows.forEach(function (row) {
      if (row.dataset.type !== "decision") return;
      var at = num(row, "start"), parent = null;
      for (var i = ordered.length - 1; i >= 0; i--) {
        var span = ordered[i];
        if (num(span, "start") > at) continue;
        if ((num(span, "end") === null ? at : num(span, "end")) >= at) { parent = span; break; }
      }
      depthOf.set(row, parent ? depthOf.get(parent) + 1 : 0);
      if (parent) row.dataset.parent = parent.dataset.span; else delete row.dataset.parent;
    });

    var origin = Infinity, end = -Infinity;
    rows.forEach(function (row) {
      if (row.dataset.type === "outcome" && running) return;
      var start = num(row, "start"), stop = num(row, "end");
      origin = Math.min(origin, start);
      end = Math.max(end, stop === null ? start : stop);
    });
    if (running) end = Math.max(end, Date.now() * 1000);
    if (!isFinite(origin)) origin = end = Date.now() * 1000;
    var total = Math.max(end - origin, 1);

    rows.forEach(function (row) {
      var depth = depthOf.get(row);
      row.style.setProperty("--depth", Math.min(depth, 14));
      var start = row.dataset.type === "outcome" && running ? end : num(row, "start");
      var stop = num(row, "end");
      var offset = Math.min(Math.max((start - origin) / total * 100, 0), 100);
      var bar = $(".wf-bar", row), marker = $(".wf-marker", row);
      if (bar && stop !== null) {
        bar.style.left = offset.toFixed(3) + "%";
        bar.style.width = Math.min(Math.max((stop - start) / total * 100, MIN_BAR), 100 - offset).toFixed(3) + "%";
      }
      if (marker) marker.style.left = offset.toFixed(3) + "%";
    });

    var keyed = rows.map(function (row, index) {
      var frame = FRAME_RANK[row.dataset.type] || 0;  // the request first, the outcome last
      return { row: row, key: [frame, num(row, "start"), TYPE_ORDER[row.dataset.type] || 0, depthOf.get(row), index] };
    });
    keyed.sort(function (a, b) {
      for (var i = 0; i < a.key.length; i++) { if (a.key[i] !== b.key[i]) return a.key[i] < b.key[i] ? -1 : 1; }
      return 0;
    });
    var moved = keyed.some(function (item, i) { return item.row !== rows[i]; });
    if (moved) keyed.forEach(function (item) { list.appendChild(item.row); });

    var axis = $(".wf-axis-track");
    if (axis) {
      all(".wf-tick", axis).forEach(function (tick, i, ticks) {
        tick.textContent = duration(total / 1000 * i / (ticks.length - 1));
      });
    }
  }

  // --- the replay ---------------------------------------------------------------------------

  function Replay(fabric, list) {
    this.fabric = fabric;
    this.list = list;
    this.current = null;
    this.timer = null;
    this.pos = $("#replay-pos");
  }

  Replay.prototype.rows = function () { return Array.prototype.slice.call(this.list.children); };

  Replay.prototype.select = function (row, options) {
    options = options || {};
    if (!row) return;
    var previous = this.current;
    if (previous && previous !== row) {
      previous.removeAttribute("aria-current");
      var old = $(".wf-label", previous);
      if (old) old.setAttribute("tabindex", "-1");
    }
    this.current = row;
    row.setAttribute("aria-current", "step");
    var link = $(".wf-label", row);
    link.setAttribute("tabindex", "0");
    if (options.focus) link.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
    this.update();
    if (options.load && window.htmx) {
      window.htmx.ajax("GET", link.getAttribute("hx-get"), { target: "#step-detail", swap: "innerHTML" });
    }
    if (history.replaceState) history.replaceState(null, "", "#step-" + row.dataset.step);
  };

  Replay.prototype.update = function () {
    var rows = this.rows();
    var index = rows.indexOf(this.current);
    $("[data-pos]", this.pos).textContent = index >= 0 ? String(index + 1) : "–";
    $("[data-count]", this.pos).textContent = String(rows.length);
    var phase = this.current ? $(".wf-phase", this.current) : null;
    this.pos.setAttribute("data-phase", phase ? phase.textContent.trim() : "");
    if (!rows.some(function (row) { return $(".wf-label", row).getAttribute("tabindex") === "0"; }) && rows.length) {
      $(".wf-label", rows[0]).setAttribute("tabindex", "0");
    }
  };

  Replay.prototype.step = function (delta, options) {
    var rows = this.rows();
    if (!rows.length) return;
    var index = rows.indexOf(this.current);
    var next = index < 0 ? (delta > 0 ? 0 : rows.length - 1) : Math.min(Math.max(index + delta, 0), rows.length - 1);
    if (next === index) { this.stop(); return; }
    this.select(rows[next], Object.assign({ load: true }, options));
  };

  Replay.prototype.jump = function (end, options) {
    var rows = this.rows();
    if (rows.length) this.select(end ? rows[rows.length - 1] : rows[0], Object.assign({ load: true }, options));
  };

  Replay.prototype.toggle = function () {
    var button = $("#replay-play"), self = this;
    if (this.timer) { this.stop(); return; }
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Pause";
    this.step(1);
    this.timer = setInterval(function () { self.step(1); }, 1500);
  };

  Replay.prototype.stop = function () {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = null;
    var button = $("#replay-play");
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Play";
  };

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  function wireReplay(replay) {
    var fabric = replay.fabric, list = replay.list;
    $("#replay-next").addEventListener("click", function () { replay.step(1); });
    $("#replay-prev").addEventListener("click", function () { replay.step(-1); });
    $("#replay-first").addEventListener("click", function () { replay.jump(false); });
    $("#replay-last").addEventListener("click", function () { replay.jump(true); });
    $("#replay-play").addEventListener("click", function () { replay.toggle(); });
    list.addEventListener("click", function (event) {
      var row = event.target.closest(".wf-row");
      if (row) { replay.stop(); replay.select(row); }
    });
    fabric.addEventListener("click", function (event) {
      var goto = event.target.closest("[data-goto]");
      if (!goto) return;
      event.preventDefault();
      replay.select(document.getElementById("step-" + goto.getAttribute("data-goto")), { load: true, focus: true });
    });
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      var inList = list.contains(document.activeElement);
      var key = event.key;
      var focus = { focus: true };
      if (key === "ArrowRight" || key === "j" || (inList && key === "ArrowDown")) { replay.stop(); replay.step(1, focus); }
      else if (key === "ArrowLeft" || key === "k" || (inList && key === "ArrowUp")) { replay.stop(); replay.step(-1, focus); }
      else if ((key === "Home" || key === "End") && (inList || document.activeElement === document.body)) { replay.stop(); replay.jump(key === "End", focus); }
      else if (key === "p") { replay.toggle(); }
      else return;
      event.preventDefault();
    });
    var hash = location.hash.replace(/^#/, "");
    var target = hash && document.getElementById(hash);
    if (target && target.classList.contains("wf-row")) replay.select(target, { load: true });
    replay.update();
  }

  // --- live updates -------------------------------------------------------------------------

  function setStatus(state, text) {
    var el = $("#live-status");
    if (!el) return;
    el.className = "live live--" + state;
    el.textContent = text;
  }

  function socket(path, withCursor, onMessage) {
    var attempt = 0;
    function open() {
      var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path +
        (withCursor ? "?cursor=" + encodeURIComponent(live.cursor) : "");
      var ws = new WebSocket(url);
      ws.onopen = function () {
        attempt = 0;
        live.polling = false;
        setStatus("on", "Live");
      };
      ws.onmessage = function (event) { onMessage(JSON.parse(event.data)); };
      ws.onclose = function (event) {
        if (CLOSED_FOR_GOOD[event.code]) {
          live.polling = false;
          setStatus("off", CLOSED_FOR_GOOD[event.code]);
          return;
        }
        live.polling = true;
        setStatus("polling", "Polling (reconnecting…)");
        setTimeout(open, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]);
      };
    }
    if (!("WebSocket" in window)) { live.polling = true; setStatus("polling", "Polling"); return; }
    open();
  }

  function initFabric(fabric) {
    var list = $("#timeline", fabric);
    var replay = new Replay(fabric, list);
    live.cursor = fabric.dataset.cursor || "";
    layout(list, fabric.dataset.running === "1");
    wireReplay(replay);

    function apply(message) {
      if (message.type === "moved") {
        setStatus("off", "This trace now belongs to a run");
        var link = document.createElement("a");
        link.href = message.url;
        link.textContent = " Open the run";
        $("#live-status").appendChild(link);
        return;
      }
      if (message.type === "gone") { setStatus("off", "Not live: the run is gone"); return; }
      if (message.type !== "update") return;
      if (message.cursor) live.cursor = message.cursor;
      if (message.state && message.state !== "running") fabric.dataset.running = "";
      (message.steps || []).forEach(function (step) {
        var row = fromHtml(step.html);
        var existing = document.getElementById(row.id);
        if (existing) {
          row.classList.remove("wf-row--new");
          if (existing === replay.current) {
            row.setAttribute("aria-current", "step");
            replay.current = row;
          }
          var oldLink = $(".wf-label", existing);
          $(".wf-label", row).setAttribute("tabindex", oldLink.getAttribute("tabindex") || "-1");
          existing.replaceWith(row);
        } else {
          list.appendChild(row);
        }
        if (window.htmx) window.htmx.process(row);
      });
      if ((message.steps || []).length) {
        var empty = $("#timeline-empty");
        if (empty && $(".wf-row--span", list)) empty.remove();
        layout(list, fabric.dataset.running === "1");
        replay.update();
      }
      if (message.summary) {
        var summary = $("#run-summary");
        if (summary) summary.replaceWith(fromHtml(message.summary));
        tickRunning();
      }
    }

    document.body.addEventListener("htmx:afterRequest", function (event) {
      if (!event.detail.elt || event.detail.elt.id !== "live-poll" || !event.detail.successful) return;
      apply(JSON.parse(event.detail.xhr.responseText));
    });
    if (fabric.dataset.socket) socket(fabric.dataset.socket, true, apply);
    setInterval(function () { if (fabric.dataset.running === "1") layout(list, true); }, 5000);
  }

  function initFleet(fleet) {
    var received = {}; // row id -> the HTML last received for it
    function apply(message) {
      if (message.type !== "fleet") return;
      var body = $("#fleet-rows");
      var empty = $("#fleet-empty");
      var wanted = {};
      message.rows.forEach(function (item) {
        wanted[item.id] = true;
        var existing = document.getElementById(item.id);
        var row = existing;
        if (!existing || received[item.id] !== item.html) {
          row = fromHtml("<table><tbody>" + item.html + "</tbody></table>").querySelector("tr");
          // A new run, or one whose counts or state moved (not merely the first message
          // about a row the page was rendered with).
          if (!existing) row.classList.add("row--new");
          else if (received[item.id] !== undefined) row.classList.add("row--changed");
          if (existing) existing.replaceWith(row);
        }
        received[item.id] = item.html;
        body.insertBefore(row, empty);
      });
      all("tr[id^='fleet-run-']", body).forEach(function (row) { if (!wanted[row.id]) row.remove(); });
      empty.hidden = message.rows.length > 0;
      var running = $("[data-running]");
      if (running) running.textContent = String(message.running);
      tickRunning();
    }
    socket(fleet.dataset.socket, false, apply);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var fabric = $("#fabric");
    if (fabric) initFabric(fabric);
    var fleet = $("#fleet");
    if (fleet && fleet.dataset.socket) initFleet(fleet);
    tickRunning();
    setInterval(tickRunning, 1000);
  });
})();
