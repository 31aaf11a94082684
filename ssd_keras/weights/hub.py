"""The weights hub: a manifest of known checkpoints, fetched into a cache with their sha256 checked.

``ssd_keras/pretrained/manifest.json`` (package data, so it is installed with the
package; the files it ships lie beside it) lists known checkpoints (see
``weights/README.md``)::

    {"description": "...",
     "entries": [{"name", "url", "sha256", "size", "preset", "format", "metric",
                  "source", "verified", "note", "licence"}, ...]}     # sorted by name

:func:`fetch` downloads an entry into a cache with its sha256 checked (through
:func:`ssd_keras.data.download.download_file`: resumable, atomic) and can load it
into its preset (:func:`ssd_keras.weights.loading.build_model` + ``load_into``);
:func:`register_weights` (and ``python -m ssd_keras weights register``) adds the
file of a training run with the sha256 computed from the file itself.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil

from ssd_keras import presets, pretrained
from ssd_keras.data.download import ChecksumError, download_file, file_digest
from ssd_keras.io_utils import write_json
from ssd_keras.weights.loading import build_model, load_into

#: ``format`` -> file name suffix in the cache (it is also what :func:`load_into` dispatches on)
WEIGHT_FORMATS = {"keras": ".keras", "weights.h5": ".weights.h5", "legacy_h5": ".h5"}

#: the package's manifest (``ssd_keras/pretrained/manifest.json``; files it ships lie beside it)
DEFAULT_MANIFEST = os.path.join(os.path.dirname(os.path.abspath(pretrained.__file__)),
                                "manifest.json")

_ENTRY_FIELDS = ("name", "url", "sha256", "size", "preset", "format", "metric", "source",
                 "verified", "note", "licence")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


class UnverifiedWeightsError(ValueError):
    """A manifest entry without a recorded sha256 was requested without ``allow_unverified``."""


def default_cache_dir() -> str:
    """``$SSD_KERAS_WEIGHTS_DIR``, else ``~/.keras/ssd_keras/weights``."""
    return (os.environ.get("SSD_KERAS_WEIGHTS_DIR")
            or os.path.join(os.path.expanduser("~"), ".keras", "ssd_keras", "weights"))


def _load_manifest_document(manifest, missing_ok=False) -> dict:
    """The manifest as ``{"entries": [...], ...}`` from a path, a dict or a list of entries."""
    if manifest is None:
        manifest = DEFAULT_MANIFEST
    if isinstance(manifest, (str, os.PathLike)):
        path = os.fspath(manifest)
        if not os.path.exists(path):
            if missing_ok:
                return {"entries": []}
            raise FileNotFoundError(f"weights manifest not found: {path}")
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    if isinstance(manifest, list):
        return {"entries": list(manifest)}
    if isinstance(manifest, dict) and isinstance(manifest.get("entries", []), list):
        return {**manifest, "entries": list(manifest.get("entries", []))}
    raise ValueError("a weights manifest is a JSON object {'entries': [...]} or a list of entries")


def read_manifest(manifest=None) -> dict:
    """``{name: entry}`` of a manifest (a path, a dict ``{"entries": [...]}`` or a list).

    ``None`` reads :data:`DEFAULT_MANIFEST`.
    """
    entries = {}
    for entry in _load_manifest_document(manifest)["entries"]:
        name = entry.get("name")
        if not name:
            raise ValueError(f"weights manifest entry without a name: {entry}")
        if name in entries:
            raise ValueError(f"weights manifest lists {name!r} twice")
        entries[name] = entry
    return entries


def cache_filename(entry) -> str:
    """``<name><format suffix>``: the suffix tells :func:`load_into` how to read the file."""
    fmt = entry.get("format")
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"{entry['name']}: unknown format {fmt!r}; expected one of "
                         f"{sorted(WEIGHT_FORMATS)}")
    filename = entry["name"] + WEIGHT_FORMATS[fmt]
    if os.path.basename(filename) != filename or filename.startswith("."):
        raise ValueError(f"weights name {entry['name']!r} is not a plain file name")
    return filename


def _check_signature(path, fmt) -> None:
    """Refuse a file that is not HDF5 (``.h5``) / zip (``.keras``): e.g. an HTML page."""
    expected = _ZIP_SIGNATURE if fmt == "keras" else _HDF5_SIGNATURE
    with open(path, "rb") as handle:
        head = handle.read(len(expected))
    if head != expected:
        kind = "zip (.keras)" if fmt == "keras" else "HDF5"
        raise ValueError(f"{path} is not an {kind} file (it starts with {head!r}; a web page? "
                         f"Google Drive links serve an HTML page: download the file in a "
                         f"browser and pass its local path as the URL)")


def _verify_cached(path, sha256) -> None:
    """Check a cached file against ``sha256`` (if known); a mismatching file is deleted."""
    if sha256:
        actual = file_digest(path, "sha256")
        if actual != sha256.lower():
            os.remove(path)
            raise ChecksumError(f"{os.path.basename(path)}: checksum mismatch: expected sha256 "
                                f"{sha256.lower()}, got {actual}; deleted {path}")


def _install_local(source, dest, sha256, quiet) -> None:
    """Copy a local file into the cache (via ``.part`` + ``os.replace``) after checking its hash."""
    if os.path.exists(dest) and sha256 and file_digest(dest, "sha256") == sha256.lower():
        if not quiet:
            print(f"{os.path.basename(dest)}: already in the cache and verified", flush=True)
        return
    if sha256:
        actual = file_digest(source, "sha256")
        if actual != sha256.lower():
            raise ChecksumError(f"{source}: checksum mismatch: expected sha256 {sha256.lower()}, "
                                f"got {actual}; not copied into the cache")
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    shutil.copyfile(source, dest + ".part")
    os.replace(dest + ".part", dest)


def fetch(name, cache_dir=None, manifest=None, allow_unverified=False, load=True, *,
          url=None, mirror=None, quiet=False, timeout=60.0):
    """Download (or find in the cache) the manifest entry ``name``, checking its sha256.

    Args:
        name: entry name in the manifest.
        cache_dir: where weights are kept (default :func:`default_cache_dir`); the
            file is ``<cache_dir>/<name><suffix of its format>``.
        manifest: path, dict or list of entries (default :data:`DEFAULT_MANIFEST`).
        allow_unverified: accept an entry whose sha256 is unknown (``null``); the
            sha256 of what was downloaded is printed so it can be recorded.
        load: build the entry's preset and load the weights into it.
        url: source overriding the entry's URL: an ``http(s)://`` URL or a local
            file path (e.g. a file downloaded by hand from Google Drive).
        mirror: base URL serving the cache file name (``<mirror>/<name><suffix>``).
        quiet: no progress output.

    Returns:
        The cached file's path, or with ``load=True`` the
        :class:`~ssd_keras.SSDModel` of ``presets.get(entry["preset"])`` holding
        the weights.

    Raises:
        KeyError: unknown name.
        UnverifiedWeightsError: the entry has no sha256 and ``allow_unverified`` is False.
        ssd_keras.data.download.ChecksumError: the file's sha256 differs (the
            downloaded file is deleted, never left in the cache).
    """
    entries = read_manifest(manifest)
    if name not in entries:
        raise KeyError(f"no weights named {name!r} in the manifest; known: "
                       f"{', '.join(sorted(entries)) or '(none)'}")
    entry = entries[name]
    sha256 = entry.get("sha256")
    if not sha256 and not allow_unverified:
        raise UnverifiedWeightsError(
            f"{name}: the manifest records no sha256 for this file "
            f"({entry.get('note') or 'unverified'}); pass allow_unverified=True "
            f"(CLI: --allow-unverified) to use it anyway")
    filename = cache_filename(entry)
    dest = os.path.join(os.fspath(cache_dir or default_cache_dir()), filename)
    source = url or (mirror.rstrip("/") + "/" + filename if mirror else entry.get("url"))
    if (source and not url and not mirror and "://" not in source and not os.path.isabs(source)
            and (manifest is None or isinstance(manifest, (str, os.PathLike)))):
        # a relative path written in a manifest file is relative to that file's folder
        source = os.path.join(os.path.dirname(os.path.abspath(manifest or DEFAULT_MANIFEST)), source)
    if not source:  # e.g. a registered local run: only a file already in the cache can serve
        if not os.path.exists(dest):
            raise ValueError(f"{name}: the manifest gives no URL; pass url= (a URL or a local "
                             f"file) or mirror=, or put the file at {dest}")
        _verify_cached(dest, sha256)
    elif "://" not in source or source.startswith("file://"):
        _install_local(source[len("file://"):] if source.startswith("file://") else source,
                       dest, sha256, quiet)
    else:
        download_file(source, dest, sha256=sha256, expected_size=entry.get("size"),
                      quiet=quiet, timeout=timeout)
    try:
        _check_signature(dest, entry["format"])
    except ValueError:
        if not sha256:  # an unverified download that is not even the right kind of file
            os.remove(dest)
        raise
    if not sha256:
        print(f"{name}: UNVERIFIED weights {dest}: sha256 {file_digest(dest, 'sha256')}, "
              f"{os.path.getsize(dest)} bytes -- record the sha256 in the manifest once the "
              f"file is known to be right", flush=True)
    if not load:
        return dest
    if entry.get("preset_module"):  # presets registered outside ssd_keras.presets
        importlib.import_module(entry["preset_module"])
    model = build_model(presets.get(entry["preset"]))
    load_into(model, dest, verbose=not quiet)   # the cache file's suffix names its format
    return model


def _format_of(path) -> str:
    for fmt, suffix in sorted(WEIGHT_FORMATS.items(), key=lambda item: -len(item[1])):
        if path.endswith(suffix):
            return fmt
    if path.endswith(".hdf5"):
        return "legacy_h5"
    raise ValueError(f"{path}: unknown weights format (expected .weights.h5, .keras or legacy .h5)")


def register_weights(path, name, preset, metric=None, source=None, url=None,
                     manifest_path=None, note=None, format=None, licence=None) -> dict:
    """Add (or replace) the manifest entry ``name`` for the weights file ``path``.

    The sha256 and size are computed from the file, so the entry is
    ``verified: true``.  The manifest is rewritten atomically with its entries
    sorted by name; other entries and top-level keys are kept.

    Args:
        path: a ``.weights.h5``, ``.keras`` or legacy ``.h5`` file (e.g. a training
            run's best checkpoint).
        name: entry name (also the cache file's stem).
        preset: the preset the weights belong to (must be registered now, so that
            :func:`fetch` can build it; a preset registered by another module
            records that module as ``preset_module``).
        metric: e.g. ``{"VOC2007 test mAP (11-point)": 0.771}``.
        source: where the file came from (default: ``"registered from <path>"``).
        url: where it can be downloaded (``None``: only from a cache or a
            ``url=`` given to :func:`fetch`).
        manifest_path: default :data:`DEFAULT_MANIFEST`.
        note: free text.
        format: ``"keras" | "weights.h5" | "legacy_h5"`` (default: from the suffix).
        licence: the file's licence and its origin's (e.g. ``"Apache-2.0 (TF models)"``).

    Returns:
        The entry written.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    fmt = format or _format_of(path)
    entry = {"name": name, "format": fmt}
    cache_filename(entry)  # validates the name and the format
    _check_signature(path, fmt)
    presets.get(preset)  # KeyError listing the known presets
    # the factory's module, when it is not ssd_keras.presets, must be imported to rebuild it
    factory = getattr(presets, "_PRESETS", {}).get(preset)
    factory_module = getattr(factory, "__module__", presets.__name__)
    entry.update({
        "url": url,
        "sha256": file_digest(path, "sha256"),
        "size": os.path.getsize(path),
        "preset": preset,
        "metric": metric,
        "source": source or f"registered from {path}",
        "verified": True,
        "note": note or ("sha256 computed from the file by register_weights"
                         + ("" if url else "; no download URL: fetch() finds it in the cache "
                            "or takes url= / --url")),
    })
    if licence:
        entry["licence"] = licence
    if factory_module not in (presets.__name__, "__main__"):
        entry["preset_module"] = factory_module
    entry = {key: entry[key] for key in (*_ENTRY_FIELDS, "preset_module") if key in entry}
    manifest_path = os.fspath(manifest_path or DEFAULT_MANIFEST)
    document = _load_manifest_document(manifest_path, missing_ok=True)
    entries = [e for e in document["entries"] if e.get("name") != name] + [entry]
    document["entries"] = sorted(entries, key=lambda e: e["name"])
    write_json(manifest_path, document)
    return entry
