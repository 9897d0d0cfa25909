// Cellplane portal: live updates over server-sent events (no inline scripts; CSP script-src 'self').
// An element with data-sse="<url>" follows that stream:
//   #cell-status, #cluster-status, #tasks: "status" events replace its HTML (rendered and
//   escaped by the server);
//   #logs: "reset" clears, "log" appends lines, "wait" says why there is nothing yet, "end" stops.
// A form with data-upload (the image upload) is sent by XHR with its progress shown.
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
  // form[data-upload]: the image upload, sent as the raw body by XHR so that the <progress>
  // shows how much went; the JSON answer's errors are shown at their fields.
  function wire(form) {
    var bar = form.querySelector("progress"), status = document.getElementById("upload-status");
    var general = document.getElementById("upload-general");
    function show(el, text) { if (el) { el.textContent = text || ""; el.hidden = !text; } }
    function fieldError(name, text) {
      var input = document.getElementById("image-" + name);
      show(document.getElementById("image-" + name + "-error"), text);
      if (input) { if (text) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); } }
    }
    form.addEventListener("submit", function (ev) {
      var file = form.querySelector('input[type="file"]').files[0];
      var name = form.querySelector('input[name="name"]').value.trim();
      ev.preventDefault();
      fieldError("name", ""); fieldError("file", ""); show(general, "");
      if (!file) { fieldError("file", "choose an image tarball to upload"); return; }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action + "?name=" + encodeURIComponent(name));
      xhr.setRequestHeader("Content-Type", "application/x-tar");
      xhr.setRequestHeader("X-CSRF-Token", form.getAttribute("data-csrf"));
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) { return; }
        var pct = Math.floor(100 * e.loaded / e.total);
        bar.value = pct;
        status.textContent = pct + "% (" + e.loaded + " of " + e.total + " bytes)";
      };
      xhr.onload = function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (x) { body = {}; }
        if (xhr.status === 201) {
          bar.value = 100; status.textContent = "uploaded";
          window.location.assign(form.getAttribute("data-done") + encodeURIComponent(body.name || name));
          return;
        }
        status.textContent = "refused";
        var errs = body.errors || { "": [body.detail || ("the server answered " + xhr.status)] };
        for (var k in errs) {
          if (k === "name" || k === "file") { fieldError(k, errs[k].join("; ")); } else { show(general, errs[k].join("; ")); }
        }
      };
      xhr.onerror = function () { status.textContent = "the upload was cut off"; show(general, "The upload did not complete (the connection closed); the server may have refused it as too large."); };
      status.textContent = "uploading";
      xhr.send(file);
    });
  }
  function start() {
    var els = document.querySelectorAll("[data-sse]");
    for (var i = 0; i < els.length; i++) { follow(els[i]); }
    var forms = document.querySelectorAll("form[data-upload]");
    for (var j = 0; j < forms.length; j++) { wire(forms[j]); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
