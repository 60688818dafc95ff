"""The on-disk cache of converted OpenVINO models: built once, under a lock, written atomically.

Several worker processes often start together and ask for the same model. Each cached model
has a lock file beside it (`<name>.lock`, an `fcntl.flock`): the first process builds and
saves it while the others wait, then they read what it wrote. Files are written under
temporary names and renamed into place, the `.xml` last, so a reader never sees half a model;
one that is unreadable anyway (truncated, emptied by a full disk) is built again. A cache
folder that cannot be written only costs the conversion: the model is built and used unsaved.

Reading a model marks it used (its time is set to now); `prune_model_cache`, run as a worker starts,
removes what no process used for MODEL_CACHE_KEEP_DAYS: each checkpoint tried once otherwise left its
converted forms (about 100 MB each in fp32) for good.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from shared.model.runtime.openvino_loader import import_openvino

log = logging.getLogger(__name__)


def cached_ir(path: Path | None, make: Callable[[], Any]) -> Any:
    """The `openvino.Model` saved at `path` (an .xml and its .bin), else `make()`, saved there.

    `path` None: no caching, `make()` every time.
    """
    if path is None:
        return make()
    with _build_lock(path):
        model = _read(path)
        if model is None:
            model = make()
            _save(model, path)
        else:
            mark_used(path, path.with_suffix(".bin"))
    return model


def mark_used(*paths: Path) -> None:
    """Set the files' time to now, so `prune_model_cache` keeps them (best effort: a read-only cache
    is never pruned by this process either)."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.utime(path)


# OpenVINO's compiled blobs (compiled_dir) are not read through here: they are pruned by age alone,
# and one still in use is compiled again once (about a second).
COMPILED_SUBDIR = "compiled"
STALE_TEMPORARY_S = 86_400  # a partial file this old was left by a process that died writing it


def prune_model_cache(folder: Path, *, keep_days: float, now: float | None = None) -> tuple[int, int]:
    """Remove cached models, records and compiled blobs unused for `keep_days` (0: none); returns
    (files removed, bytes freed). An entry being built (its lock held) is left alone; a model's .xml
    goes before its .bin, so a reader never finds the one without the other."""
    if keep_days <= 0 or not folder.is_dir():
        return 0, 0
    now = time.time() if now is None else now
    cutoff = now - keep_days * 86_400
    removed = freed = 0

    def remove(path: Path) -> None:
        nonlocal removed, freed
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        removed += 1
        freed += size

    for path in sorted(folder.iterdir()):  # x.bin sorts before x.xml: a pair goes with its .xml
        if not path.is_file() or path.suffix == ".lock":
            continue
        if path.name.startswith("."):  # a partial file (`_temporary`) of a process that died writing it
            if _mtime(path) <= now - STALE_TEMPORARY_S:
                remove(path)
        elif path.suffix == ".xml":
            if _mtime(path) <= cutoff:
                with _try_lock(path) as locked:
                    if locked and _mtime(path) <= cutoff:  # not marked used while we waited for nothing
                        remove(path)
                        remove(path.with_suffix(".bin"))
        elif path.suffix == ".bin":  # only an orphan here: unreadable without its .xml
            if not path.with_suffix(".xml").exists() and _mtime(path) <= cutoff:
                remove(path)
        elif _mtime(path) <= cutoff:  # a .delta.json record
            remove(path)
    compiled = folder / COMPILED_SUBDIR
    if compiled.is_dir():
        for path in sorted(compiled.rglob("*")):
            if path.is_file() and _mtime(path) <= cutoff:
                remove(path)
    return removed, freed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone meanwhile: nothing to remove


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Whether `<path>.lock` could be taken at once (False: a process is building or reading it)."""
    try:
        lock = open(path.with_suffix(".lock"), "a")
    except OSError:
        yield False
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True


def writable_dir(path: Path | None) -> Path | None:
    """`path`, created if need be, if this process can write there; else None (and why, in the log)."""
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("cannot use %s as a model cache: %s", path, exc)
        return None
    if not os.access(path, os.W_OK):
        log.info("cannot use %s as a model cache: not writable", path)
        return None
    return path


def write_text_atomically(path: Path, text: str) -> bool:
    """Write a small cache record in one piece; False (and nothing written) if the folder is not writable."""
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.info("could not write the cache record %s: %s", path, exc)
        _remove(tmp)
        return False


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock`; none (the caller proceeds alone) if it cannot be created."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a")
    except OSError as exc:  # a read-only cache: whatever is there can still be read
        log.info("cannot lock the model cache at %s (%s); building without a lock", path.parent, exc)
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        except OSError as exc:  # a file system without locks (some network mounts)
            log.info("cannot lock %s (%s); building without a lock", lock.name, exc)
        yield


def _read(path: Path) -> Any | None:
    """The model at `path`, or None if it is absent or unreadable (then it will be rebuilt)."""
    if not path.is_file():
        return None
    try:
        return import_openvino().Core().read_model(str(path))
    except RuntimeError as exc:  # OpenVINO checks the XML and that every weight lies inside the .bin
        log.warning("the cached model %s is unreadable, building it again: %s", path, str(exc).splitlines()[0])
        return None


def _save(model: Any, path: Path) -> None:
    ov = import_openvino()
    tmp = _temporary(path)
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=False)  # writes tmp and its .bin
        for written in (tmp.with_suffix(".bin"), tmp):
            _fsync(written)
        path.unlink(missing_ok=True)  # an old .xml must never meet the new .bin
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: OpenVINO could not write (a full disk)
        log.info("could not cache the OpenVINO model at %s: %s", path, exc)
        _remove(tmp)
        _remove(tmp.with_suffix(".bin"))


def _temporary(path: Path) -> Path:
    """A name beside `path` for this process's partial file, with `path`'s suffix (save_model needs .xml)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or its folder never existed
        path.unlink()


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
