"""The weights_not_found message is read by CLI and API users: it must hold for both."""
from __future__ import annotations

import pytest

from shared.errors import WeightsNotFoundError
from shared.model.checkpoints import find_checkpoint
from tests.checkpoints import write_seed_checkpoint


def _message(weights_dir, **kwargs) -> str:
    with pytest.raises(WeightsNotFoundError) as error:
        find_checkpoint(weights_dir, **kwargs)
    return error.value.message


def test_an_empty_weights_dir_says_how_to_install_one(tmp_path):
    message = _message(tmp_path)

    assert "none is installed" in message and "deepfake weights fetch NAME" in message
    assert "--weights" not in message  # the API has no such flag, and refuses paths
    assert str(tmp_path) not in message


def test_checkpoints_of_another_length_are_named_as_choices(tmp_path):
    path = write_seed_checkpoint(tmp_path, sequence_length=4)

    message = _message(tmp_path, sequence_length=20)

    assert f"installed: {path.name} (seed checkpoints for sequence lengths [4])." in message
    assert "by name with the weights setting" in message
    assert "--weights" not in message and str(tmp_path) not in message
