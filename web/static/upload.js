// Upload page: drag and drop, then send the form with XMLHttpRequest to show upload progress.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("video");
  var zone = document.getElementById("drop-zone");
  var chosen = document.getElementById("chosen");
  var statusBox = document.getElementById("upload-status");
  var bar = document.getElementById("upload-progress");
  var percent = document.getElementById("upload-percent");
  var errorBox = document.getElementById("upload-error");
  var button = document.getElementById("submit");

  function showChosen() {
    var file = input.files[0];
    chosen.textContent = file ? "Selected: " + file.name + " (" + (file.size / 1048576).toFixed(1) + " MB)" : "";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    statusBox.hidden = true;
    button.disabled = false;
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showChosen();
    }
  });
  input.addEventListener("change", showChosen);

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.files.length) { showError("Choose a video first."); return; }
    var data = new FormData(form);
    // Empty settings mean "the model's own value": do not send them.
    Array.from(data.keys()).forEach(function (key) { if (key !== "video" && data.get(key) === "") data.delete(key); });
    // The page's CSRF token is for its plain form post; the API refuses cross-site requests by Origin.
    data.delete("csrf_token");
    var waited = 0;
    function attempt() {
      var request = new XMLHttpRequest();
      request.open("POST", form.dataset.api);
      request.setRequestHeader("Accept", "application/json");
      request.upload.onprogress = function (e) {
        if (!e.lengthComputable) return;
        var value = Math.round(100 * e.loaded / e.total);
        bar.value = value;
        percent.textContent = value === 100 ? "100% — checking the video…" : value + "%";
      };
      request.onload = function () {
        var body = null;
        try { body = JSON.parse(request.responseText); } catch (e) { body = null; }
        if (request.status === 202 && body) { window.location.assign(body.links.page); return; }
        // 429: the service asks us to wait (its Retry-After, else 10 s; at most 60 s a time, 600 s in all),
        // then the same upload is sent again, as the batch page and the CLI do.
        var asked = parseFloat(request.getResponseHeader("Retry-After"));
        var wait = request.status === 429 ? Math.min(Math.max(isFinite(asked) ? asked : 10, 1), 60) : 0;
        if (wait && waited + wait <= 600) {
          waited += wait;
          percent.textContent = "the server is busy (" + (body && body.error ? body.error.message : "HTTP 429") +
            "); sending again in " + wait + " s";
          setTimeout(attempt, wait * 1000);
          return;
        }
        showError(body && body.error ? body.error.message + " (" + body.error.code + ")" : "Upload failed (HTTP " + request.status + ").");
      };
      request.onerror = function () { showError("The upload was interrupted; check the connection and try again."); };
      request.send(data);
    }
    errorBox.hidden = true;
    statusBox.hidden = false;
    button.disabled = true;
    attempt();
  });
})();
