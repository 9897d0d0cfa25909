// Cellplane portal: live updates over server-sent events (no inline scripts; CSP script-src 'self').
// An element with data-sse="<url>" follows that stream:
//   #cell-status, #cluster-status, #tasks: "status" events replace its HTML (rendered and
//   escaped by the server);
//   #logs: "reset" clears, "log" appends lines, "wait" says why there is nothing yet, "end" stops.
(function () {
  "use strict";
  function follow(el) {
    var es = new EventSource(el.getAttribute("data-sse"));
    if (el.id !== "logs") {
      es.addEventListener("status", function (e) { el.innerHTML = e.data; });
      es.addEventListener("gone", function () { es.close(); el.textContent = "This was deleted."; });
      return;
    }
    var note = document.getElementById("logs-note");
    function say(text) { if (note) { note.textContent = text; } }
    es.addEventListener("reset", function () { el.textContent = ""; say("(live)"); });
    es.addEventListener("log", function (e) {
      var stick = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      el.appendChild(document.createTextNode(e.data + "\n"));
      if (stick) { el.scrollTop = el.scrollHeight; }
    });
    es.addEventListener("wait", function (e) { say("(" + e.data + ")"); });
    es.addEventListener("end", function () { es.close(); say("(the process ended)"); });
  }
  function start() {
    var els = document.querySelectorAll("[data-sse]");
    for (var i = 0; i < els.length; i++) { follow(els[i]); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
