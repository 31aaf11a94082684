"""Strict backbone options: each architecture declares its ``config.backbone`` keys with defaults.

A builder reads its options once, through :func:`backbone_options`::

    VGG16_OPTIONS = {"imagenet_weights": False}
    opts = backbone_options(config, VGG16_OPTIONS)   # defaults, overridden by config.backbone

so a misspelt key (``{"min_dept": 8}``) is a one-line ``ValueError`` naming the
key, the architecture and the keys it knows, not a silently ignored setting.
"""
from __future__ import annotations

from typing import Mapping


def backbone_options(config, defaults: Mapping) -> dict:
    """``defaults`` overridden by ``config.backbone``; unknown keys are a ``ValueError``.

    Args:
        config: a detector config (``name``, ``architecture``, ``backbone`` dict).
        defaults: every option the architecture reads, with its default.

    Returns:
        a new dict with exactly the keys of ``defaults``.
    """
    backbone = dict(config.backbone or {})
    unknown = sorted(set(backbone) - set(defaults))
    if unknown:
        raise ValueError(f"{config.name}: unknown backbone option(s) {unknown} for architecture "
                         f"{config.architecture!r}; known: {sorted(defaults)}")
    return {**defaults, **backbone}
