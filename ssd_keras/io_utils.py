"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Everything is written to a temporary file in the destination folder, flushed
and synced, then moved over the destination with ``os.replace`` (atomic on
POSIX and Windows).  A failure leaves the previous file untouched and removes
the temporary one.
"""
from __future__ import annotations

import json
import os
from typing import Callable


def temp_path_for(path: str) -> str:
    """A temporary name beside ``path`` (same folder, so ``os.replace`` stays atomic)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".tmp-{os.getpid()}-{name}")


def atomic_write(path, write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` then move the result to ``path``.

    ``write`` must create the file itself (e.g. ``model.save_weights``); the
    temporary name keeps ``path``'s suffix, which Keras' savers check.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = temp_path_for(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, synced to disk."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    atomic_write(path, write)


def write_json(path, document, indent=2) -> None:
    """Write ``document`` as JSON (trailing newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(document, indent=indent, ensure_ascii=False) + "\n")
