"""Resuming an interrupted analysis from the CNN features it already computed.

The trunk is most of an analysis' cost. While a job runs, every call to the embedder is recorded, in
order, as (digest of the crops it was given, the features it returned), and flushed every few hundred
crops as a chunk file to a `ChunkStore` (for the service: the job's folder in the file store, which any
worker reaches). A later attempt of the same job replays the whole pipeline (decoding, detection and
tracking are cheap next to the trunk and give the same crops in the same order), and for each call whose
crops hash the same as the recorded one takes the recorded features instead of running the trunk. So
the result is the uninterrupted run's exactly: the same features feed the same windows, and the batches
computed after the recorded ones are composed as they would have been. From the first call that differs
(another machine's detector found a face one pixel apart, another checkpoint) everything is computed,
and the recording is rewritten from there.

Chunks are `.npz` files read with `allow_pickle=False`: a tampered file can give wrong numbers for a job
it belongs to, never run code. Memory holds one chunk being read and one being written.
"""
from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

FLUSH_ROWS = 256  # crops per chunk: ~2 MB of 2048-float features, a few hundred frames of one face
_DIGEST_BYTES = 20


class ChunkStore(Protocol):
    """Where one job's chunks live: named files, listed in name order."""

    def names(self) -> list[str]: ...
    def read(self, name: str) -> bytes: ...
    def write(self, name: str, path: Path) -> None: ...
    def delete(self, name: str) -> None: ...


class FeatureCheckpoint:
    """`embed(crops, compute)`: the recorded features of this call when its crops match, else `compute(crops)`."""

    def __init__(self, chunks: ChunkStore, *, flush_rows: int = FLUSH_ROWS) -> None:
        self.chunks = chunks
        self.flush_rows = flush_rows
        self.reused_crops = 0
        self.computed_crops = 0
        self._call = 0  # index of the next embedder call
        self._replay = _Replay(chunks)
        self._pending: list[tuple[bytes, np.ndarray]] = []  # recorded since the last flush
        self._pending_first = 0
        self._pending_rows = 0

    def embed(self, crops: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        digest = crops_digest(crops)
        recorded = self._replay.take(self._call, digest)
        if recorded is not None:
            self._call += 1
            self.reused_crops += len(crops)
            return torch.from_numpy(recorded)
        if self._replay.active:
            self._start_recording_at(self._call)
        features = compute(crops)
        self.computed_crops += len(crops)
        self._record(digest, features)
        return features

    def _start_recording_at(self, call: int) -> None:
        """Stop replaying; keep what was valid of the current chunk and drop the recording from there."""
        first, kept = self._replay.stop(call)
        for name in self._replay.names_from(first):
            self.chunks.delete(name)
        self._pending = kept
        self._pending_first = first
        self._pending_rows = sum(len(f) for _, f in kept)

    def _record(self, digest: bytes, features: torch.Tensor) -> None:
        if not self._pending:
            self._pending_first = self._call
        self._pending.append((digest, features.detach().cpu().numpy()))
        self._pending_rows += len(features)
        self._call += 1
        if self._pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the calls recorded since the last flush as one chunk."""
        if not self._pending:
            return
        digests = np.frombuffer(b"".join(d for d, _ in self._pending), dtype=np.uint8).reshape(-1, _DIGEST_BYTES)
        rows = np.array([len(f) for _, f in self._pending], dtype=np.int64)
        features = np.concatenate([f for _, f in self._pending])
        with tempfile.TemporaryDirectory(prefix="features-") as folder:
            path = Path(folder) / "chunk.npz"
            np.savez(path, digests=digests, rows=rows, features=features)
            self.chunks.write(chunk_name(self._pending_first), path)
        self._pending, self._pending_rows = [], 0


class _Replay:
    """The recorded calls, chunk by chunk, while they keep matching."""

    def __init__(self, chunks: ChunkStore) -> None:
        self.chunks = chunks
        self.names = sorted(name for name in chunks.names() if _first_call(name) is not None)
        self.active = bool(self.names)
        self._loaded: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # first, digests, rows, offsets
        self._features: np.ndarray | None = None

    def take(self, call: int, digest: bytes) -> np.ndarray | None:
        if not self.active or not self._load_chunk_of(call):
            return None
        first, digests, rows, offsets = self._loaded
        row = call - first
        if bytes(digests[row]) != digest:
            return None
        return self._features[offsets[row]:offsets[row] + rows[row]].copy()

    def stop(self, call: int) -> tuple[int, list[tuple[bytes, np.ndarray]]]:
        """Stop at `call`: the first call of the chunk it falls in, and that chunk's valid calls before it."""
        self.active = False
        if self._loaded is None or not self._loaded[0] <= call < self._loaded[0] + len(self._loaded[1]):
            return call, []
        first, digests, rows, offsets = self._loaded
        kept = [(bytes(digests[i]), self._features[offsets[i]:offsets[i] + rows[i]].copy()) for i in range(call - first)]
        self._loaded = self._features = None
        return first, kept

    def names_from(self, first: int) -> list[str]:
        return [name for name in self.names if _first_call(name) >= first]

    def _load_chunk_of(self, call: int) -> bool:
        if self._loaded is not None and call < self._loaded[0] + len(self._loaded[1]):
            return call >= self._loaded[0]
        name = chunk_name(call)
        if name not in self.names:  # the recording ends here (or has a gap)
            return False
        try:
            with np.load(io.BytesIO(self.chunks.read(name)), allow_pickle=False) as data:
                digests, rows, features = data["digests"], data["rows"], data["features"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return False  # unreadable (a worker killed mid-write), damaged or foreign: compute from here
        if digests.shape[1:] != (_DIGEST_BYTES,) or len(rows) != len(digests) or rows.sum() != len(features):
            return False
        self._loaded = (call, digests, rows, np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64))
        self._features = features
        return True


def crops_digest(crops: np.ndarray) -> bytes:
    """Identity of one embedder call's input: shape, dtype and every byte of the crops."""
    digest = hashlib.sha1(f"{crops.shape}|{crops.dtype}".encode())
    digest.update(np.ascontiguousarray(crops).data)
    return digest.digest()


def chunk_name(first_call: int) -> str:
    return f"{first_call:09d}.npz"


def _first_call(name: str) -> int | None:
    stem = name[:-4] if name.endswith(".npz") else ""
    return int(stem) if stem.isdigit() else None
