"""``python -m ssd_keras weights list | fetch NAME | register PATH | convert-mobilenet-v2``.

The command line of :mod:`ssd_keras.weights.hub` (the manifest) and of
:func:`ssd_keras.pretrained.convert_mobilenet_v2` (the shipped backbone).
Errors (a missing file, a checksum mismatch, an unknown name) are one line on
stderr and exit status 1.
"""
from __future__ import annotations

import json
import os
import sys

from ssd_keras import pretrained
from ssd_keras.weights.hub import (DEFAULT_MANIFEST, WEIGHT_FORMATS, cache_filename,
                                   default_cache_dir, fetch, read_manifest, register_weights)


def _metric_from_argument(value):
    """``--metric-json``: a JSON file path or an inline JSON object."""
    if value is None:
        return None
    if value.lstrip().startswith("{"):
        return json.loads(value)
    with open(value, encoding="utf-8") as handle:
        return json.load(handle)


def _run_list(args) -> int:
    cache_dir = args.cache_dir or default_cache_dir()
    entries = read_manifest(args.manifest)
    if not entries:
        print("no weights in the manifest")
        return 0
    for name, entry in sorted(entries.items()):
        try:
            cached = os.path.exists(os.path.join(cache_dir, cache_filename(entry)))
        except ValueError:
            cached = False
        metric = ", ".join(f"{k} {v}" for k, v in (entry.get("metric") or {}).items()) or "-"
        print(f"{name}  preset={entry.get('preset')}  format={entry.get('format')}  "
              f"{'verified' if entry.get('verified') else 'UNVERIFIED'}"
              f"{'  cached' if cached else ''}  metric: {metric}")
    return 0


def _run_fetch(args) -> int:
    result = fetch(args.name, cache_dir=args.cache_dir, manifest=args.manifest,
                   allow_unverified=args.allow_unverified, load=args.load, url=args.url,
                   mirror=args.mirror)
    if args.load:
        print(f"{args.name}: loaded into a {result.detector_config.name} model "
              f"({result.count_params():,} parameters)")
    else:
        print(result)
    return 0


def _run_register(args) -> int:
    entry = register_weights(args.path, args.name, args.preset,
                             metric=_metric_from_argument(args.metric_json), source=args.source,
                             url=args.url, manifest_path=args.manifest, note=args.note,
                             format=args.format, licence=args.licence)
    print(json.dumps(entry, indent=2))
    return 0


def _run_convert_mobilenet_v2(args) -> int:
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(pretrained.__file__)),
                                   pretrained.MOBILENET_V2_IMAGENET)
    print(json.dumps(pretrained.convert_mobilenet_v2(args.npy, out), indent=2))
    return 0


def run_weights(args) -> int:
    """``weights`` command: dispatch to list / fetch / register; errors -> exit status 1."""
    if not getattr(args, "action", None):
        args.parser.print_help()
        return 2
    try:
        return args.action(args)
    except (OSError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"weights {args.weights_command} failed: {message}", file=sys.stderr, flush=True)
        return 1


def register(subparsers):
    """Add the ``weights`` command (``list``, ``fetch NAME``, ``register PATH``,
    ``convert-mobilenet-v2 --npy DIR``)."""
    parser = subparsers.add_parser(
        "weights", help="list, fetch (sha256-checked, cached) and register detector weights",
        description="Known checkpoints live in ssd_keras/pretrained/manifest.json "
                    "(see weights/README.md).")
    parser.set_defaults(func=run_weights, action=None, parser=parser)
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION")

    def common(sub):
        sub.add_argument("--manifest", default=None,
                         help=f"manifest JSON (default: {os.path.relpath(DEFAULT_MANIFEST)})")

    listing = actions.add_parser("list", help="list the manifest's entries")
    common(listing)
    listing.add_argument("--cache-dir", default=None, help="cache folder to report on")
    listing.set_defaults(action=_run_list)

    get = actions.add_parser("fetch", help="download an entry into the cache, checking its sha256")
    get.add_argument("name")
    common(get)
    get.add_argument("--cache-dir", default=None,
                     help="default: $SSD_KERAS_WEIGHTS_DIR or ~/.keras/ssd_keras/weights")
    get.add_argument("--allow-unverified", action="store_true",
                     help="accept an entry without a recorded sha256 (prints the computed one)")
    get.add_argument("--url", default=None,
                     help="download from this URL or copy this local file instead")
    get.add_argument("--mirror", default=None, metavar="URL",
                     help="base URL serving <name><suffix> (e.g. NAME.weights.h5)")
    get.add_argument("--load", action="store_true",
                     help="also build the preset and load the weights (a check)")
    get.set_defaults(action=_run_fetch)

    add = actions.add_parser("register",
                             help="add a weights file to the manifest (sha256 from the file)")
    add.add_argument("path")
    add.add_argument("--name", required=True)
    add.add_argument("--preset", required=True)
    common(add)
    add.add_argument("--metric-json", default=None,
                     help="JSON file (or inline JSON object) with the evaluation metric(s)")
    add.add_argument("--url", default=None, help="where the file can be downloaded")
    add.add_argument("--source", default=None, help="where the file came from")
    add.add_argument("--note", default=None)
    add.add_argument("--licence", default=None, help="licence of the file (and of its origin)")
    add.add_argument("--format", default=None, choices=sorted(WEIGHT_FORMATS),
                     help="default: from the file suffix")
    add.set_defaults(action=_run_register)

    convert = actions.add_parser(
        "convert-mobilenet-v2",
        help="convert TF-slim MobileNetV2 1.0 ImageNet .npy arrays into the backbone .h5",
        description="Writes keras.applications.MobileNetV2(alpha=1.0, include_top=False) "
                    "weights, keyed by layer name (Keras-2 HDF5 layout), from the per-layer "
                    "arrays of the TF-slim mobilenet_v2_1.0_224 checkpoint; prints the sha256.")
    convert.add_argument("--npy", required=True, metavar="DIR",
                         help="folder of Conv_weights.npy, expanded_conv_1_expand_weights.npy, ...")
    convert.add_argument("--out", default=None, metavar="FILE.h5",
                         help="default: the file shipped in the package (ssd_keras/pretrained/)")
    convert.set_defaults(action=_run_convert_mobilenet_v2)
    return parser
