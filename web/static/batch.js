// Batch page: create the batch through the API, then upload the chosen files one at a time
// (one failed upload does not cost the others), then open the batch's page.
(function () {
  "use strict";
  var form = document.getElementById("batch-form");
  if (!form) { return; }
  var input = document.getElementById("batch-files");
  var button = document.getElementById("batch-submit");
  var statusBox = document.getElementById("batch-status");
  var bar = document.getElementById("batch-progress");
  var current = document.getElementById("batch-current");
  var errorBox = document.getElementById("batch-error");
  // A 429 (rate_limited with Retry-After; too_many_active_jobs without one) asks the page to wait, not to give
  // up on the file: wait what the service says (DEFAULT_WAIT_S without it, at most MAX_WAIT_S a time and
  // PATIENCE_S a file in all), then send the same request again; the same bounds as deepfake batch (cli/busy.py).
  var DEFAULT_WAIT_S = 10, MAX_WAIT_S = 60, PATIENCE_S = 600;

  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
  }

  function errorText(xhr) {
    try { return JSON.parse(xhr.responseText).error.message; } catch (e) { return "HTTP " + xhr.status; }
  }

  function waitSeconds(xhr) {
    var asked = parseFloat(xhr.getResponseHeader("Retry-After"));
    if (!isFinite(asked) || asked < 0) { asked = DEFAULT_WAIT_S; }
    return Math.min(Math.max(asked, 1), MAX_WAIT_S);
  }

  // send(), and again after each 429 once its wait is over, while the waits fit in PATIENCE_S; then done(xhr).
  function sendPatiently(method, url, body, onProgress, label, done) {
    var waited = 0;
    (function attempt() {
      send(method, url, body, onProgress, function (xhr) {
        var wait = xhr.status === 429 ? waitSeconds(xhr) : 0;
        if (!wait || waited + wait > PATIENCE_S) { return done(xhr); }
        waited += wait;
        var shown = current.textContent;
        statusBox.hidden = false;
        current.textContent = label + ": the server is busy (" + errorText(xhr) + "); sending it again in " +
          wait + " s";
        setTimeout(function () { current.textContent = shown; attempt(); }, wait * 1000);
      });
    })();
  }

  function send(method, url, body, onProgress, done) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url);
    if (typeof body === "string") { xhr.setRequestHeader("Content-Type", "application/json"); }
    if (onProgress) { xhr.upload.addEventListener("progress", onProgress); }
    xhr.addEventListener("load", function () { done(xhr); });
    xhr.addEventListener("error", function () { done(xhr); });
    xhr.send(body);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = Array.prototype.slice.call(input.files);
    if (!files.length) { return fail("Choose at least one video."); }
    var options = {};
    form.querySelectorAll("[data-option]").forEach(function (field) {
      if (field.value !== "") { options[field.name] = field.value; }
    });
    var body = JSON.stringify({ name: document.getElementById("batch-name").value, options: options });
    button.disabled = true;
    errorBox.hidden = true;
    sendPatiently("POST", form.dataset.api, body, null, "The batch", function (xhr) {
      if (xhr.status !== 201) { return fail("The batch could not be created: " + errorText(xhr)); }
      var batch = JSON.parse(xhr.responseText);
      var failures = [];
      statusBox.hidden = false;
      (function next(index) {
        if (index >= files.length) {
          if (failures.length) { alert(failures.length + " file(s) were not accepted:\n" + failures.join("\n")); }
          window.location = batch.links.page;
          return;
        }
        var file = files[index];
        current.textContent = file.name + " (" + (index + 1) + " of " + files.length + ")";
        var data = new FormData();
        data.append("path", file.name);
        data.append("video", file);
        sendPatiently("POST", batch.links.items, data, function (e) {
          if (e.lengthComputable) { bar.value = Math.round(100 * (index + e.loaded / e.total) / files.length); }
        }, file.name, function (itemXhr) {
          if (itemXhr.status !== 201) { failures.push(file.name + ": " + errorText(itemXhr)); }
          next(index + 1);
        });
      })(0);
    });
  });
})();
