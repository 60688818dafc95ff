"""Pictures of a result: the timeline chart of fake probability over video time per face track."""
from __future__ import annotations

import io


def plot_timeline(result: dict, *, width_in: float = 10.0) -> bytes:
    """A PNG: one line per track (window centre time → fake probability), the threshold dashed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, 3.2), dpi=100)
    axes = figure.subplots()
    for track in result["tracks"]:
        xs = [(w["start_s"] + w["end_s"]) / 2 for w in track["windows"]]
        ys = [w["fake_probability"] for w in track["windows"]]
        axes.plot(xs, ys, marker="o", markersize=3, label=f"face {track['id']} ({track['verdict']})")
    threshold = result["model"]["threshold"]
    axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_ylim(0, 1)
    axes.set_xlim(0, max(result["video"]["duration_s"], 1e-3))
    axes.set_xlabel("video time (s)")
    axes.set_ylabel("fake probability")
    axes.set_title(f"Verdict: {result['verdict']}")
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
