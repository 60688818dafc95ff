// Job page: poll the API while the job waits or runs; draw the timeline as inline SVG; once done, play the
// preview with each face track's box drawn over it, the timeline and the video linked both ways.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
  // Fake probability → colour, linear between stops: the same scale as `deepfake analyze --annotate`
  // (shared/model/annotate.py PROBABILITY_STOPS; a test keeps the two equal).
  var PROBABILITY_STOPS = [[0.0, [22, 163, 74]], [0.5, [234, 179, 8]], [1.0, [220, 38, 38]]];
  var UNSCORED = "rgb(148, 163, 184)";
  var STATUS_LABELS = { queued: "queued", running: "analysing" };
  var job = JSON.parse(document.getElementById("job-data").textContent);
  var POLL_MS = 1000;
  var video = document.getElementById("preview");
  var playhead = null, timeToX = null;

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function probabilityColour(p) {
    if (typeof p !== "number") return UNSCORED;
    p = Math.min(Math.max(p, 0), 1);
    for (var i = 1; i < PROBABILITY_STOPS.length; i++) {
      var lo = PROBABILITY_STOPS[i - 1], hi = PROBABILITY_STOPS[i];
      if (p <= hi[0]) {
        var f = (p - lo[0]) / (hi[0] - lo[0]);
        var rgb = lo[1].map(function (c, k) { return Math.round(c + (hi[1][k] - c) * f); });
        return "rgb(" + rgb.join(", ") + ")";
      }
    }
    return "rgb(" + PROBABILITY_STOPS[PROBABILITY_STOPS.length - 1][1].join(", ") + ")";
  }

  function percent(p) { return Math.round(p * 100) + "%"; }

  function tracksOf(doc) {
    if (doc.result && doc.result.tracks) return doc.result.tracks;
    return doc.timeline ? doc.timeline.tracks : [];
  }

  function thresholdOf(doc) {
    var model = doc.result && doc.result.model;
    return model && typeof model.threshold === "number" ? model.threshold : 0.5;
  }

  function durationOf(doc, tracks) {
    var info = doc.result && doc.result.video;
    var end = info && info.duration_s ? info.duration_s : 0, secondsPerFrame = 0;
    tracks.forEach(function (t) {
      t.windows.forEach(function (w) {
        end = Math.max(end, w.end_s);
        if (w.end_frame > 0) secondsPerFrame = Math.max(secondsPerFrame, w.end_s / w.end_frame);
      });
    });
    // While the job runs, span the whole video (estimated from its frame count) so the line grows.
    var total = doc.progress && doc.progress.frames_total;
    if (!info && total && secondsPerFrame) end = Math.max(end, total * secondsPerFrame);
    return end > 0 ? end : 1;
  }

  // Stretches to shade: where no face was found (listed on the page), and while the job runs, the part of
  // the video not analysed yet.
  function gapsOf(doc, duration) {
    var gaps = Array.prototype.map.call(document.querySelectorAll("#timeline-gaps li"), function (li) {
      return { start: parseFloat(li.dataset.startS), end: parseFloat(li.dataset.endS), text: li.textContent, label: "no face" };
    });
    var progress = doc.progress || {};
    if (doc.status === "running" && progress.frames_total && progress.frames_done < progress.frames_total) {
      var from = duration * progress.frames_done / progress.frames_total;
      gaps.push({ start: from, end: duration, label: "not yet analysed",
                  text: "not yet analysed from " + from.toFixed(1) + " s to " + duration.toFixed(1) + " s" });
    }
    return gaps;
  }

  function seek(seconds) {
    if (!video) return;
    video.currentTime = seconds;
    video.scrollIntoView({ block: "nearest" });
  }

  function drawTimeline(doc) {
    var box = document.getElementById("timeline");
    if (!box) return;
    var tracks = tracksOf(doc).filter(function (t) { return t.windows && t.windows.length; });
    box.textContent = "";
    playhead = null;
    if (!tracks.length) {
      box.textContent = doc.status === "running" ? "No windows scored yet." : "No face track was scored.";
      return;
    }
    var W = 760, H = 300, L = 52, R = 16, T = 16, B = 44;
    var duration = durationOf(doc, tracks), threshold = thresholdOf(doc);
    var x = function (s) { return L + (W - L - R) * s / duration; };
    var y = function (p) { return T + (H - T - B) * (1 - p); };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "timeline-svg-title", class: "timeline-svg" });
    svg.appendChild(el("title", { id: "timeline-svg-title" }, "Fake probability over time for " + tracks.length + " face track(s); threshold " + percent(threshold)));
    gapsOf(doc, duration).forEach(function (gap) {
      var shade = el("rect", { x: x(gap.start), y: T, width: Math.max(1, x(gap.end) - x(gap.start)), height: H - T - B, class: "gap" });
      shade.appendChild(el("title", {}, gap.text));
      svg.appendChild(shade);
      if (x(gap.end) - x(gap.start) > 7 * gap.label.length) {
        svg.appendChild(el("text", { x: (x(gap.start) + x(gap.end)) / 2, y: T + 14, "text-anchor": "middle", class: "gap-label" }, gap.label));
      }
    });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (p) {
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid" }));
      svg.appendChild(el("text", { x: L - 8, y: y(p) + 4, "text-anchor": "end", class: "tick" }, percent(p)));
    });
    for (var i = 0; i <= 5; i++) {
      var s = duration * i / 5;
      svg.appendChild(el("text", { x: x(s), y: H - B + 18, "text-anchor": "middle", class: "tick" }, s.toFixed(1) + " s"));
    }
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, "video time"));
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(threshold), y2: y(threshold), class: "threshold" }));
    svg.appendChild(el("text", { x: W - R, y: y(threshold) - 6, "text-anchor": "end", class: "threshold-label" }, "threshold " + percent(threshold)));
    tracks.forEach(function (track, k) {
      var color = COLORS[k % COLORS.length];
      var points = track.windows.map(function (w) {
        return x((w.start_s + w.end_s) / 2).toFixed(1) + "," + y(w.fake_probability).toFixed(1);
      });
      svg.appendChild(el("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 2.5 }));
      track.windows.forEach(function (w) {
        var group = el("g", { class: video ? "window seekable" : "window", "data-track": track.id, "data-start-s": w.start_s });
        group.appendChild(el("circle", { cx: x((w.start_s + w.end_s) / 2), cy: y(w.fake_probability), r: 10, class: "hit" }));
        group.appendChild(el("circle", { cx: x((w.start_s + w.end_s) / 2), cy: y(w.fake_probability), r: 4.5, fill: probabilityColour(w.fake_probability), stroke: color, "stroke-width": 1.5 }));
        group.appendChild(el("title", {}, "track " + track.id + ", " + w.start_s.toFixed(2) + "–" + w.end_s.toFixed(2) + " s: " + percent(w.fake_probability) + (video ? " (click to play from here)" : "")));
        if (video) group.addEventListener("click", function (event) { event.stopPropagation(); seek(w.start_s); });
        svg.appendChild(group);
      });
    });
    if (video) {
      timeToX = x;
      playhead = el("line", { id: "playhead", x1: x(0), x2: x(0), y1: T, y2: H - B, class: "playhead" });
      svg.appendChild(playhead);
      svg.addEventListener("click", function (event) {  // anywhere else on the chart: that moment
        var rect = svg.getBoundingClientRect();
        var at = ((event.clientX - rect.left) * W / rect.width - L) / (W - L - R) * duration;
        if (at >= 0 && at <= duration) seek(at);
      });
      svg.classList.add("seekable");
      movePlayhead();
    }
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
      item.appendChild(document.createTextNode("track " + track.id + (typeof p === "number" ? ": " + percent(p) + " fake" : "") + (track.verdict ? " (" + track.verdict + ")" : "")));
      list.appendChild(item);
    });
    return list;
  }

  function movePlayhead() {
    if (!playhead || !video) return;
    var px = timeToX(video.currentTime || 0);
    playhead.setAttribute("x1", px);
    playhead.setAttribute("x2", px);
  }

  // The overlay: one absolutely positioned box per track, at the track's box interpolated in time.
  function TrackPath(track) {
    this.track = track;
    this.samples = (track.boxes || []).slice().sort(function (a, b) { return a.t - b.t; });
  }

  TrackPath.prototype.boxAt = function (t, tolerance) {
    var s = this.samples, n = s.length;
    if (!n || t < s[0].t - tolerance || t > s[n - 1].t + tolerance) return null;
    var lo = 0, hi = n;  // first sample later than t
    while (lo < hi) { var mid = (lo + hi) >> 1; if (s[mid].t <= t) lo = mid + 1; else hi = mid; }
    if (lo === 0) return s[0].box;
    if (lo === n) return s[n - 1].box;
    var a = s[lo - 1], b = s[lo], f = b.t > a.t ? (t - a.t) / (b.t - a.t) : 0;
    return a.box.map(function (v, k) { return v + (b.box[k] - v) * f; });
  };

  function setUpOverlay() {
    var overlay = document.getElementById("overlay");
    var result = job.result || {};
    if (!video || !overlay || !result.video) return;
    var info = result.video;
    var tolerance = info.fps ? 1 / info.fps : 0.05;  // a frame either side of a track's first and last boxes
    var paths = (result.tracks || []).filter(function (t) { return t.boxes && t.boxes.length; }).map(function (track) {
      var path = new TrackPath(track);
      var p = track.fake_probability;
      path.node = document.createElement("div");
      path.node.className = "track-box";
      path.node.dataset.track = track.id;
      path.node.style.borderColor = probabilityColour(p);
      var label = document.createElement("span");
      label.className = "track-label";
      label.style.background = probabilityColour(p);
      label.textContent = "track " + track.id + (typeof p === "number" ? " " + percent(p) : "");
      path.node.appendChild(label);
      path.node.hidden = true;
      overlay.appendChild(path.node);
      return path;
    });

    function draw() {
      // The picture inside the element (letterboxed if the element's shape differs), in CSS pixels.
      var vw = video.videoWidth || info.width, vh = video.videoHeight || info.height;
      var scale = Math.min(video.clientWidth / vw, video.clientHeight / vh);
      var left = (video.clientWidth - vw * scale) / 2, top = (video.clientHeight - vh * scale) / 2;
      var toScreen = scale * vw / info.width;  // result pixels → CSS pixels
      paths.forEach(function (path) {
        var box = path.boxAt(video.currentTime, tolerance);
        path.node.hidden = !box;
        if (!box) return;
        path.node.style.left = (left + box[0] * toScreen) + "px";
        path.node.style.top = (top + box[1] * toScreen) + "px";
        path.node.style.width = ((box[2] - box[0]) * toScreen) + "px";
        path.node.style.height = ((box[3] - box[1]) * toScreen) + "px";
      });
      movePlayhead();
    }

    function playing() {
      draw();
      if (!video.paused && !video.ended) window.requestAnimationFrame(playing);
    }

    ["loadedmetadata", "seeked", "seeking", "timeupdate", "pause"].forEach(function (name) { video.addEventListener(name, draw); });
    video.addEventListener("play", function () { window.requestAnimationFrame(playing); });
    window.addEventListener("resize", draw);
    draw();
  }

  function formatEta(seconds) {
    if (seconds === null || seconds === undefined) return "Estimating the time left…";
    if (seconds < 1) return "Finishing…";
    if (seconds < 60) return "About " + Math.ceil(seconds) + " s left.";
    return "About " + Math.round(seconds / 60) + " min left.";
  }

  function showProgress(doc) {
    document.getElementById("job-status").textContent = STATUS_LABELS[doc.status] || doc.status;
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
      if (!window.confirm("Stop this analysis? What has been analysed so far is not kept.")) return;
      cancel.disabled = true;
      cancel.textContent = "Cancelling…";
      fetch(cancel.dataset.url, { method: "POST", headers: { Accept: "application/json" } });
    });
  }

  drawTimeline(job);
  // Each track card's swatch is its line's colour on the timeline, as in the legend.
  var scored = tracksOf(job).filter(function (t) { return t.windows && t.windows.length; });
  scored.forEach(function (track, k) {
    var swatch = document.querySelector('.track-card[data-track="' + track.id + '"] .swatch');
    if (swatch) swatch.style.background = COLORS[k % COLORS.length];
  });
  setUpOverlay();
  if (job.status === "queued" || job.status === "running") {
    showProgress(job);
    window.setTimeout(poll, POLL_MS);
  }
})();
