"""Checkpoints generated for the tests, in each public family's file layout."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from shared.model.faces.retinaface import RetinaFace


def random_retinaface(backbone: str, *, seed: int = 0) -> RetinaFace:
    """A RetinaFace with every parameter and BatchNorm statistic random (so loading is really tested)."""
    generator = torch.Generator().manual_seed(seed)
    net = RetinaFace(backbone)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("bn1.weight", ".1.weight", ".4.weight")) and tensor.dim() == 1:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.75)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
    return net.eval()


def save_pytorch_retinaface(net: RetinaFace, path: Path) -> Path:
    """Pytorch_Retinaface layout: a plain state dict, every key prefixed `module.` (DataParallel)."""
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    return path


def save_retinaface_pytorch_zip(net: RetinaFace, path: Path, *, legacy: bool = True) -> Path:
    """retinaface-pytorch release layout: a zip holding one torch-saved state dict (no prefix)."""
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer, _use_new_zipfile_serialization=not legacy)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(path.stem + ".pth", buffer.getvalue())
    return path
