/* Approvals console: live inbox over a websocket, keyboard answers, countdowns.
 *
 * The socket (apps/approvals/live.py) only says which request changed; the page then fetches
 * its own fragment again, so what it shows always comes through the server's scope checks.
 * With the socket down the inbox polls every POLL_MS instead.
 */
(function () {
  "use strict";
  var POLL_MS = 10000;
  var inbox = document.getElementById("inbox");
  var detail = document.getElementById("approval");
  var root = inbox || detail;
  if (!root) return;
  var live = document.getElementById("inbox-live");
  var selected = null;

  function say(state, text) {
    if (!live) return;
    live.className = "live live--" + state;
    live.textContent = text;
  }

  // --- countdowns -------------------------------------------------------------------------
  function left(ms) {
    if (ms <= 0) return "expired";
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    if (h) return h + "h " + (m < 10 ? "0" : "") + m + "m";
    return m + "m " + (s < 10 ? "0" : "") + s + "s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (el) {
      var ms = Date.parse(el.getAttribute("datetime")) - now;
      el.textContent = left(ms);
      el.classList.toggle("count-bad", ms < 5 * 60000);
    });
  }
  tick();
  setInterval(tick, 1000);

  // --- the inbox: fetch the queue again when told ------------------------------------------------
  function rows() { return inbox ? Array.prototype.slice.call(inbox.querySelectorAll("tr[data-approval]")) : []; }
  function select(row) {
    rows().forEach(function (r) { r.classList.remove("is-selected"); r.removeAttribute("aria-selected"); });
    selected = row;
    if (row) { row.classList.add("is-selected"); row.setAttribute("aria-selected", "true"); row.focus(); }
  }
  var refreshing = false;
  function refresh(changedId) {
    if (!inbox || refreshing) return;
    refreshing = true;
    var keep = selected ? selected.getAttribute("data-approval") : null;
    var known = {};
    rows().forEach(function (r) { known[r.getAttribute("data-approval")] = true; });
    fetch(inbox.getAttribute("data-fragment"), { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        inbox.innerHTML = html;
        rows().forEach(function (r) {
          var id = r.getAttribute("data-approval");
          if (!known[id]) r.classList.add("wf-row--new");
          if (id === keep) select(r);
        });
        tick();
      })
      .catch(function () { /* the next message or poll tries again */ })
      .finally(function () { refreshing = false; });
  }

  // --- the socket ---------------------------------------------------------------------------
  var delay = 1000, pollTimer = null;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try { socket = new WebSocket(scheme + location.host + root.getAttribute("data-socket")); }
    catch (e) { return fallback(); }
    socket.onopen = function () {
      delay = 1000;
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
      say("on", "Live");
    };
    socket.onmessage = function (e) {
      var msg = JSON.parse(e.data);
      if (msg.type !== "changed") return;
      if (inbox) refresh(msg.approval);
      if (detail && msg.approval === detail.getAttribute("data-approval")) {
        var note = document.getElementById("approval-changed");
        if (note) note.hidden = false;
      }
    };
    socket.onclose = function (e) {
      if (e.code === 4401 || e.code === 4403) { say("off", "Not live"); return; }
      fallback();
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  function fallback() {
    say("polling", "Reconnecting (refreshing every " + POLL_MS / 1000 + " s)");
    if (inbox && !pollTimer) pollTimer = setInterval(refresh, POLL_MS);
  }
  connect();

  // --- keys -----------------------------------------------------------------------------------
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT" || t.isContentEditable);
  }
  var pendingVerdict = null;
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey && e.key === "Enter" && pendingVerdict && detail) {
      var button = document.querySelector('#answer-form button[value="' + pendingVerdict + '"]');
      if (button) { e.preventDefault(); button.click(); }
      return;
    }
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (inbox) return inboxKey(e);
    if (detail) return detailKey(e);
  });

  function inboxKey(e) {
    var all = rows();
    if (!all.length) return;
    var at = selected ? all.indexOf(selected) : -1;
    if (e.key === "j") { e.preventDefault(); select(all[Math.min(at + 1, all.length - 1)]); }
    else if (e.key === "k") { e.preventDefault(); select(all[Math.max(at - 1, 0)]); }
    else if ((e.key === "Enter" || e.key === "o") && selected) { e.preventDefault(); location.href = selected.getAttribute("data-url"); }
    else if (e.key === "a" && selected) {
      e.preventDefault();
      var risk = selected.getAttribute("data-risk");
      // High and critical steps are approved on their own page, where the diff is in view.
      if (risk === "high" || risk === "critical") { location.href = selected.getAttribute("data-url") + "#answer-title"; return; }
      var form = document.getElementById("approve-form");
      form.action = selected.getAttribute("data-answer");
      form.submit();
    } else if (e.key === "r" && selected) {
      e.preventDefault();
      var dialog = document.getElementById("reject-dialog");
      document.getElementById("reject-form").action = selected.getAttribute("data-answer");
      document.getElementById("reject-what").textContent = selected.getAttribute("data-what");
      dialog.showModal();
      document.getElementById("reject-reason").focus();
    }
  }
  var cancel = document.getElementById("reject-cancel");
  if (cancel) cancel.addEventListener("click", function () { document.getElementById("reject-dialog").close(); });

  function detailKey(e) {
    var form = document.getElementById("answer-form");
    if (!form) return;
    var comment = form.querySelector("textarea");
    if (e.key === "a") { e.preventDefault(); form.querySelector('button[value="approve"]').click(); }
    else if (e.key === "r") {
      e.preventDefault();
      if (comment && comment.value.trim()) { form.querySelector('button[value="reject"]').click(); return; }
      pendingVerdict = "reject";
      if (comment) { comment.placeholder = "Why you reject it; then Ctrl+Enter"; comment.focus(); }
    }
  }
})();
