"""Crops cut where the frames were decoded (the GPU path), checked on the CPU against the two
references they must agree with: torchvision's roi_align (the same sampling) and the CPU path's PIL
crops (what the seed's model saw)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from shared.model.crops import crop_faces, whole_frames
from shared.model.device_crops import crop_faces_on_device, square_boxes, to_host_crops, whole_frames_on_device
from tests.media import face_photo

SIZE = 112
MARGIN = 0.2
# A face, a small box (upscaled), a box larger than the frame's short side, and a tall box.
BOXES = np.array([[150, 40, 330, 230], [10.5, 20.2, 60.7, 70.1], [0, 0, 700, 700], [100, 100, 150, 190]],
                 dtype=np.float32)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return face_photo("astronaut")


def _tensor(*frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def test_crops_are_roi_align_with_adaptive_sampling_rounded(photo):
    frames = _tensor(photo)
    crops = crop_faces_on_device(frames, np.zeros(len(BOXES), dtype=np.int64), BOXES, size=SIZE, margin=MARGIN)
    squares = square_boxes(BOXES.astype(np.float64), margin=MARGIN, frame_w=photo.shape[1], frame_h=photo.shape[0])
    rois = torch.cat([torch.zeros(len(squares), 1), torch.from_numpy(squares).float()], dim=1)
    reference = roi_align(frames.float(), rois, output_size=SIZE, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    # Same samples and weights; only float summation order and the final rounding differ.
    assert (crops.float() - reference.round().clamp(0, 255)).abs().max().item() <= 1


def test_crops_stay_close_to_the_cpu_path_pil_crops(photo):
    crops = crop_faces_on_device(_tensor(photo), np.zeros(len(BOXES), dtype=np.int64), BOXES, size=SIZE,
                                 margin=MARGIN)
    cpu = crop_faces(photo, list(BOXES), size=SIZE, margin=MARGIN)
    difference = np.abs(to_host_crops(crops).astype(int) - cpu.astype(int)).mean(axis=(1, 2, 3))
    # Area averaging against PIL's antialiased bilinear filter: measured 0.15–1.96 levels of 255 on average.
    assert difference.max() < 2.5, difference


def test_each_crop_comes_from_its_own_frame_in_the_boxes_order(photo):
    other = face_photo("grace_hopper")[: photo.shape[0], : photo.shape[1]]
    other = np.pad(other, ((0, photo.shape[0] - other.shape[0]), (0, photo.shape[1] - other.shape[1]), (0, 0)))
    boxes = np.array([[150, 40, 330, 230], [60, 40, 200, 180], [150, 40, 330, 230]], dtype=np.float32)
    rows = np.array([1, 0, 0])
    crops = to_host_crops(crop_faces_on_device(_tensor(photo, other), rows, boxes, size=SIZE, margin=MARGIN))
    frames = (photo, other)
    for crop, row, box in zip(crops, rows, boxes):
        expected = crop_faces(frames[row], [box], size=SIZE, margin=MARGIN)[0]
        assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 2.5


def test_whole_frames_match_the_cpu_path(photo):
    frames = _tensor(photo, photo[::-1].copy())
    crops = to_host_crops(whole_frames_on_device(frames, size=SIZE))
    cpu = whole_frames(np.stack([photo, photo[::-1]]), size=SIZE)
    assert crops.shape == cpu.shape == (2, SIZE, SIZE, 3)
    assert np.abs(crops.astype(int) - cpu.astype(int)).mean() < 1.0


def test_no_boxes_no_crops(photo):
    crops = crop_faces_on_device(_tensor(photo), np.zeros(0, dtype=np.int64), np.zeros((0, 4), np.float32),
                                 size=SIZE, margin=MARGIN)
    assert tuple(crops.shape) == (0, 3, SIZE, SIZE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_crops_stay_on_the_gpu_and_equal_the_cpu_op(photo):
    rows = np.zeros(len(BOXES), dtype=np.int64)
    on_cpu = crop_faces_on_device(_tensor(photo), rows, BOXES, size=SIZE, margin=MARGIN)
    on_gpu = crop_faces_on_device(_tensor(photo).cuda(), rows, BOXES, size=SIZE, margin=MARGIN)
    assert on_gpu.is_cuda
    assert (on_gpu.cpu().int() - on_cpu.int()).abs().max().item() <= 1
