"""ThreadBudget: one budget per process, split between the producer and the CNN that run at once."""
from __future__ import annotations

import pytest
import torch

from shared.model.runtime.threads import ThreadBudget


@pytest.mark.parametrize(("cores", "producer", "consumer"), [(1, 1, 1), (2, 1, 1), (3, 1, 2), (8, 4, 4)])
def test_the_cnn_leaves_the_working_producer_its_share(cores: int, producer: int, consumer: int) -> None:
    budget = ThreadBudget(cores=cores)
    assert (budget.cnn, budget.producer, budget.consumer) == (cores, producer, consumer)
    # Running beside the producer, the two never ask for more threads than the share (one core: both run).
    assert budget.producer + budget.consumer <= max(cores, 2)


def test_torch_keeps_to_the_consumers_share_when_openvino_runs_the_trunk() -> None:
    budget = ThreadBudget(cores=4)
    assert budget.torch_threads("torch") == 4  # torch is the trunk: the whole share
    assert budget.torch_threads("openvino") == 2  # only the head and normalising, beside the producer
    before = torch.get_num_threads()
    try:
        budget.apply_to_torch("openvino")
        assert torch.get_num_threads() == 2
        budget.apply_to_torch("torch")
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_requested_threads_are_taken_as_they_are() -> None:
    assert ThreadBudget.for_process(requested=3).cores == 3
    assert ThreadBudget.for_process(processes=10**6).cores == 1
