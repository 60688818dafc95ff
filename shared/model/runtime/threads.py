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
    def consumer(self) -> int:
        """The CNN's share while the producer is working: the cores the producer leaves (at least one).
        All of them would put three busy threads on two cores, which measured ×0.77 of the speed of
        two on an int8 trunk here (context switches between the CNN's streams and the decoder); when
        the producer waits on a full queue the CNN takes every core again (`WindowConsumer`)."""
        return max(1, self.cores - self.producer)

    def torch_threads(self, trunk_backend: str) -> int:
        """torch's intra-op pool: the CNN's whole share when torch runs the trunk; when OpenVINO does,
        torch only normalises crops and runs the LSTM head beside the busy producer, so it keeps to
        the consumer's share (two threads there waited on each other: 1.7 s against 0.7 s of head
        for a 1-minute clip)."""
        return self.cnn if trunk_backend == "torch" else self.consumer

    @property
    def pin_threads(self) -> bool:
        """Pin OpenVINO's threads to cores only when it has the machine to itself: pinned threads
        that share cores with the producer and other workers wait on each other."""
        return self.cores >= available_cores() and self.cores > 2

    def apply_to_torch(self, trunk_backend: str = "torch") -> None:
        """torch's intra-op pool is per process: sized before loading and again before each analysis
        (`torch_threads`: it depends on which library runs that analysis's trunk)."""
        import torch

        wanted = self.torch_threads(trunk_backend)
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
