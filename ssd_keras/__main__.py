"""Command line: ``python -m ssd_keras <command> ...``.

Each command lives beside the code it drives and registers its own sub-parser
through a ``register(subparsers)`` function that sets ``func`` on its parser.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# command module -> imported lazily so `--help` stays fast and commands are independent
COMMAND_MODULES = (
    "ssd_keras.digits_job",          # digits (main job)
    "ssd_keras.training",            # train
    "ssd_keras.evaluation.cli",      # evaluate
    "ssd_keras.data.check",          # check-data
    "ssd_keras.data.download",       # download
    "ssd_keras.weights",             # weights (fetch / register)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssd_keras",
        description="SSD object detection for Keras 3: train, evaluate, check data, download.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def run_alone(register, command, argv=None) -> int:
    """Run one command without importing the others (each module's ``main``).

    ``register`` is the command module's ``register(subparsers)``; ``argv``
    defaults to ``sys.argv[1:]`` (without the command name).
    """
    parser = argparse.ArgumentParser(prog=command)
    register(parser.add_subparsers(dest="command"))
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args([command, *argv])
    return int(args.func(args) or 0)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
