"""One explicit thread budget per process, shared by every library in the engine that starts threads.

Left to themselves, torch, OpenVINO (once for the CNN trunk, once for the face detector), FFmpeg's
decoder and the crop pool each size their thread pools to every core of the machine, and N worker
processes on one machine multiply that N times: on two cores one analysis ran some eleven busy
threads. The budget gives a process its share of the cores (`ENGINE_THREADS`, else the cores it may
run on divided by the worker processes sharing them) and splits it between the two halves of the
pipeline that run at the same time: the CNN in the calling thread, and decode → detect → crop in the
producer thread.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadBudget:
    """How many threads each part of one analysis may use; `cores` is the process's share."""

    cores: int

    @classmethod
    def for_process(cls, *, requested: int = 0, processes: int = 1) -> "ThreadBudget":
        """`requested` > 0 is taken as is (ENGINE_THREADS); else the available cores shared evenly
        by `processes` engine processes on this machine (at least one each)."""
        if requested > 0:
            return cls(cores=int(requested))
        return cls(cores=max(1, available_cores() // max(1, processes)))

    @property
    def cnn(self) -> int:
        """The CNN trunk and the LSTM head (torch intra-op threads, OpenVINO inference threads)."""
        return self.cores

    @property
    def producer(self) -> int:
        """Each of the producer thread's helpers (face detector, decoder, crop pool): the producer
        runs alongside the CNN, so it gets half the share, not all of it."""
        return max(1, self.cores // 2)

    @property
    def pin_threads(self) -> bool:
        """Pin OpenVINO's threads to cores only when it has the machine to itself: pinned threads
        that share cores with the producer and other workers wait on each other."""
        return self.cores >= available_cores() and self.cores > 2

    def apply_to_torch(self) -> None:
        """torch's intra-op pool is per process: size it once, before the first analysis."""
        import torch

        torch.set_num_threads(self.cnn)
