// Job page: poll the API while the job waits or runs; draw the timeline as inline SVG.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
  var job = JSON.parse(document.getElementById("job-data").textContent);
  var POLL_MS = 1000;

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function tracksOf(doc) {
    if (doc.result && doc.result.tracks) return doc.result.tracks;
    return doc.timeline ? doc.timeline.tracks : [];
  }

  function thresholdOf(doc) {
    var model = doc.result && doc.result.model;
    return model && typeof model.threshold === "number" ? model.threshold : 0.5;
  }

  function durationOf(doc, tracks) {
    var video = doc.result && doc.result.video;
    var end = video && video.duration_s ? video.duration_s : 0, secondsPerFrame = 0;
    tracks.forEach(function (t) {
      t.windows.forEach(function (w) {
        end = Math.max(end, w.end_s);
        if (w.end_frame > 0) secondsPerFrame = Math.max(secondsPerFrame, w.end_s / w.end_frame);
      });
    });
    // While the job runs, span the whole video (estimated from its frame count) so the line grows.
    var total = doc.progress && doc.progress.frames_total;
    if (!video && total && secondsPerFrame) end = Math.max(end, total * secondsPerFrame);
    return end > 0 ? end : 1;
  }

  function drawTimeline(doc) {
    var box = document.getElementById("timeline");
    if (!box) return;
    var tracks = tracksOf(doc).filter(function (t) { return t.windows && t.windows.length; });
    box.textContent = "";
    if (!tracks.length) {
      box.textContent = doc.status === "running" ? "No windows scored yet." : "No face track was scored.";
      return;
    }
    var W = 760, H = 300, L = 52, R = 16, T = 16, B = 44;
    var duration = durationOf(doc, tracks), threshold = thresholdOf(doc);
    var x = function (s) { return L + (W - L - R) * s / duration; };
    var y = function (p) { return T + (H - T - B) * (1 - p); };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "timeline-svg-title", class: "timeline-svg" });
    svg.appendChild(el("title", { id: "timeline-svg-title" }, "Fake probability over time for " + tracks.length + " face track(s); threshold " + Math.round(threshold * 100) + "%"));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (p) {
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid" }));
      svg.appendChild(el("text", { x: L - 8, y: y(p) + 4, "text-anchor": "end", class: "tick" }, Math.round(p * 100) + "%"));
    });
    for (var i = 0; i <= 5; i++) {
      var s = duration * i / 5;
      svg.appendChild(el("text", { x: x(s), y: H - B + 18, "text-anchor": "middle", class: "tick" }, s.toFixed(1) + " s"));
    }
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, "video time"));
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(threshold), y2: y(threshold), class: "threshold" }));
    svg.appendChild(el("text", { x: W - R, y: y(threshold) - 6, "text-anchor": "end", class: "threshold-label" }, "threshold " + Math.round(threshold * 100) + "%"));
    tracks.forEach(function (track, k) {
      var color = COLORS[k % COLORS.length];
      var points = track.windows.map(function (w) {
        return x((w.start_s + w.end_s) / 2).toFixed(1) + "," + y(w.fake_probability).toFixed(1);
      });
      svg.appendChild(el("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 2.5 }));
      track.windows.forEach(function (w) {
        var dot = el("circle", { cx: x((w.start_s + w.end_s) / 2), cy: y(w.fake_probability), r: 3.5, fill: color });
        dot.appendChild(el("title", {}, "track " + track.id + ", " + w.start_s.toFixed(2) + "–" + w.end_s.toFixed(2) + " s: " + Math.round(w.fake_probability * 100) + "%"));
        svg.appendChild(dot);
      });
    });
    box.appendChild(svg);
    box.appendChild(legend(tracks));
  }

  function legend(tracks) {
    var list = document.createElement("ul");
    list.className = "legend";
    tracks.forEach(function (track, k) {
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLORS[k % COLORS.length];
      item.appendChild(swatch);
      var p = track.fake_probability;
      item.appendChild(document.createTextNode("track " + track.id + (typeof p === "number" ? ": " + Math.round(p * 100) + "% fake" : "") + (track.verdict ? " (" + track.verdict + ")" : "")));
      list.appendChild(item);
    });
    return list;
  }

  function formatEta(seconds) {
    if (seconds === null || seconds === undefined) return "Estimating the time left…";
    if (seconds < 1) return "Finishing…";
    if (seconds < 60) return "About " + Math.ceil(seconds) + " s left.";
    return "About " + Math.round(seconds / 60) + " min left.";
  }

  function showProgress(doc) {
    document.getElementById("job-status").textContent = doc.status;
    document.getElementById("job-status").className = "status status-" + doc.status;
    var bar = document.getElementById("job-progress");
    if (!bar) return;
    bar.value = doc.progress.fraction;
    var text = doc.status === "queued"
      ? "Waiting in the queue" + (doc.queue_position ? " (position " + doc.queue_position + ")" : "") + "."
      : doc.progress.frames_done + " of " + (doc.progress.frames_total || "?") + " frames analysed (" + Math.round(doc.progress.fraction * 100) + "%).";
    document.getElementById("progress-text").textContent = text;
    document.getElementById("progress-eta").textContent = formatEta(doc.progress.eta_s);
    var section = document.getElementById("timeline-section");
    if (doc.status === "running" && section) { section.hidden = false; drawTimeline(doc); }
  }

  function poll() {
    fetch(job.links.self, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (doc) {
        if (doc.status !== "queued" && doc.status !== "running") { window.location.reload(); return; }
        showProgress(doc);
        window.setTimeout(poll, POLL_MS);
      })
      .catch(function () { window.setTimeout(poll, POLL_MS * 5); });
  }

  var cancel = document.getElementById("cancel-button");
  if (cancel) {
    cancel.addEventListener("click", function () {
      cancel.disabled = true;
      cancel.textContent = "Cancelling…";
      fetch(cancel.dataset.url, { method: "POST", headers: { Accept: "application/json" } });
    });
  }

  drawTimeline(job);
  if (job.status === "queued" || job.status === "running") {
    showProgress(job);
    window.setTimeout(poll, POLL_MS);
  }
})();
