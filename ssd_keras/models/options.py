"""Strict backbone options: each architecture declares its ``config.backbone`` keys with defaults.

A builder module declares its architecture's options once and the builder
reads them once, through :func:`backbone_options`::

    SSD_VGG16_OPTIONS = declare_backbone_options("ssd_vgg16", {"imagenet_weights": False})
    opts = backbone_options(config)   # the declared defaults, overridden by config.backbone

so a misspelt key (``{"min_dept": 8}``) is a one-line ``ValueError`` naming the
key, the architecture and the keys it knows, not a silently ignored setting.
:func:`declared_backbone_options` lists an architecture's keys and defaults.
"""
from __future__ import annotations

from typing import Mapping, Optional


_DECLARED = {}


def declare_backbone_options(architecture: str, defaults: Mapping) -> dict:
    """Record ``defaults`` as every ``config.backbone`` key ``architecture`` reads; returns them."""
    _DECLARED[architecture] = dict(defaults)
    return _DECLARED[architecture]


def declared_backbone_options(architecture: str) -> Optional[dict]:
    """The declared options and defaults of ``architecture`` (a copy; ``None``: none declared)."""
    return dict(_DECLARED[architecture]) if architecture in _DECLARED else None


def backbone_options(config, defaults: Optional[Mapping] = None) -> dict:
    """``defaults`` overridden by ``config.backbone``; unknown keys are a ``ValueError``.

    Args:
        config: a detector config (``name``, ``architecture``, ``backbone`` dict).
        defaults: every option the architecture reads, with its default
            (``None``: those declared for ``config.architecture``).

    Returns:
        a new dict with exactly the keys of ``defaults``.
    """
    if defaults is None:
        if config.architecture not in _DECLARED:
            raise ValueError(f"{config.name}: architecture {config.architecture!r} declares no "
                             f"backbone options (declare_backbone_options)")
        defaults = _DECLARED[config.architecture]
    backbone = dict(config.backbone or {})
    unknown = sorted(set(backbone) - set(defaults))
    if unknown:
        raise ValueError(f"{config.name}: unknown backbone option(s) {unknown} for architecture "
                         f"{config.architecture!r}; known: {sorted(defaults)}")
    return {**defaults, **backbone}
