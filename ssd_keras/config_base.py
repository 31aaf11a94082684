"""What every config dataclass shares: JSON round trips with unknown fields rejected.

:class:`JsonConfig` gives a frozen dataclass ``replace``, ``to_dict`` /
``from_dict`` (unknown fields are an error naming them) and ``to_json`` /
``from_json``; :func:`as_tuple` turns JSON lists back into tuples.  Used by the
detector config, the family head configs and the training config alike, and
imports nothing of the package (so any config module may import it).
"""
from __future__ import annotations

import dataclasses
import json


def as_tuple(value):
    """Recursively turn lists into tuples (JSON round trips give lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuple(v) for v in value)
    return value


def checked_fields(cls, d: dict) -> dict:
    """``d`` if every key is a field of dataclass ``cls``; else one line naming the unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
    return dict(d)


class JsonConfig:
    """JSON round trip for config dataclasses: ``replace``, ``to_dict``/``from_dict`` (unknown
    fields rejected, naming them), ``to_json`` (atomic file write)/``from_json`` (path or text)."""

    def replace(self, **changes):
        """A copy with fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, plain JSON

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**checked_fields(cls, d))

    def to_json(self, path=None, indent=2) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from ssd_keras.io_utils import atomic_write_text
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text):
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            with open(path_or_text) as f:
                text = f.read()
        return cls.from_dict(json.loads(text))
