"""Queue lanes: which Celery queue a job's task goes to, and in which order workers take them.

Three lanes, each its own queue, named from one base (the interactive lane's queue, "analysis" by
default, so a deployment from before the lanes keeps its queue):

| lane | queue | jobs |
|---|---|---|
| interactive | `analysis` | single uploads |
| batch | `analysis.batch` | the items of a batch |
| gpu | `analysis.gpu` | long videos, while a GPU worker is alive |

Each queue has a front queue (`<queue>.front`) for requeued and re-sent jobs. A worker polls its
front queues first, then its queues in lane order: gpu, interactive, batch, so a worker that
serves both never takes a batch item while an interactive upload waits. A CPU worker serves
interactive + batch by default, a CUDA worker gpu + interactive + batch. Needs nothing beyond the
standard library: the web, the worker and the CLI all read it.
"""
from __future__ import annotations

# The one task every lane carries (its argument: the job id). The web sends it by this name, the worker
# registers it under it: a stable string, since messages already queued carry it.
ANALYZE_TASK = "deepfake.analyze_job"
INTERACTIVE = "interactive"
BATCH = "batch"
GPU = "gpu"
# In the order a worker that serves several lanes takes them.
LANES = (GPU, INTERACTIVE, BATCH)
DEFAULT_BASE_QUEUE = "analysis"
FRONT_QUEUE_SUFFIX = ".front"
_LANE_SUFFIXES = {f".{lane}": lane for lane in (BATCH, GPU)}


class UnknownLaneError(ValueError):
    """A lane name that is not one of LANES."""


def check_lane(lane: str) -> str:
    """`lane` if it is a known lane, else UnknownLaneError."""
    if lane not in LANES:
        raise UnknownLaneError(f"unknown lane {lane!r}; lanes: {', '.join(LANES)}")
    return lane


def lane_queue(lane: str, *, base: str = DEFAULT_BASE_QUEUE) -> str:
    """The queue of `lane`: `base` itself for interactive work, `<base>.<lane>` otherwise."""
    return base if check_lane(lane) == INTERACTIVE else f"{base}.{lane}"


def front_queue(queue: str) -> str:
    """The queue whose messages a worker of `queue` takes before those of `queue` itself."""
    return f"{queue}{FRONT_QUEUE_SUFFIX}"


def is_front_queue(queue: str) -> bool:
    return queue.endswith(FRONT_QUEUE_SUFFIX)


def split_queue(queue: str) -> tuple[str, str]:
    """(base, lane) of a lane queue: `analysis.gpu` → (analysis, gpu); a name without a lane suffix
    is an interactive queue and its own base."""
    for suffix, lane in _LANE_SUFFIXES.items():
        if queue.endswith(suffix) and len(queue) > len(suffix):
            return queue[: -len(suffix)], lane
    return queue, INTERACTIVE


def base_queue(queues: tuple[str, ...] | list[str]) -> str:
    """The base the lane queues of a worker (or web) configured with `queues` are named from: that of
    the first queue (WORKER_QUEUES=analysis.gpu,analysis → analysis)."""
    return split_queue(queues[0])[0] if queues else DEFAULT_BASE_QUEUE


def default_worker_queues(*, base: str = DEFAULT_BASE_QUEUE, gpu: bool = False) -> tuple[str, ...]:
    """What a worker consumes unless told otherwise: interactive + batch, and gpu first on a GPU."""
    lanes = LANES if gpu else tuple(lane for lane in LANES if lane != GPU)
    return tuple(lane_queue(lane, base=base) for lane in lanes)


def consume_order(queues: tuple[str, ...] | list[str]) -> list[str]:
    """`queues` as a worker polls them: every front queue first, then the queues, each group in lane
    order (queues outside the lane naming keep their place after those of the base)."""
    plain = [queue for queue in dict.fromkeys(queues) if not is_front_queue(queue)]
    base = base_queue(plain)
    rank = {lane_queue(lane, base=base): index for index, lane in enumerate(LANES)}
    ordered = sorted(plain, key=lambda queue: rank.get(queue, len(LANES)))
    return [front_queue(queue) for queue in ordered] + ordered
