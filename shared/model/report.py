"""A result in words and pictures: the phrases that say what a verdict means, and the timeline chart.

The words are the job page's (web/templates/job.html), so the CLI and the pages say the same thing:
"track N" for a face track, percentages, and "too close to call" rather than a confidence for an
INCONCLUSIVE verdict (the model cannot tell, so a "confidence" in either side would mislead).
"""
from __future__ import annotations

import io

TOO_CLOSE_TO_CALL = "too close to call"


def track_name(track_id: int) -> str:
    """A face track as every interface names it: `track 3`."""
    return f"track {track_id}"


def percent(probability: float) -> str:
    """`54%`: probabilities are shown as whole percentages."""
    return f"{probability * 100:.0f}%"


def verdict_note(*, verdict: str, fake_probability: float, threshold: float | None = None) -> str:
    """`threshold 50%; confidence 91%`, or `...; too close to call` for INCONCLUSIVE.

    The confidence is in the verdict's own side: the fake probability for FAKE, its complement for REAL.
    """
    if verdict == "FAKE":
        judgement = f"confidence {percent(fake_probability)}"
    elif verdict == "REAL":
        judgement = f"confidence {percent(1 - fake_probability)}"
    else:
        judgement = TOO_CLOSE_TO_CALL
    return judgement if threshold is None else f"threshold {percent(threshold)}; {judgement}"


def reasons_heading(verdict: str) -> str:
    """What the list of reasons answers: why the result is inconclusive, or why it is qualified."""
    return f"Why the result is {'inconclusive' if verdict == 'INCONCLUSIVE' else 'qualified'}"


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
        axes.plot(xs, ys, marker="o", markersize=3, label=f"{track_name(track['id'])} ({track['verdict']})")
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
