"""Command line: ``python -m ssd_keras <command> ...``.

Each command lives beside the code it drives and registers its own sub-parser
through a ``register(subparsers)`` function that sets ``func`` on its parser.

Usage errors -- argparse's (an unknown flag, an invalid choice) and a
command's :class:`~ssd_keras.usage.UsageError` (a missing folder, an unknown
preset, ...) -- print one line, ``<command>: <message>``, on stderr and exit
with status 2; other :class:`~ssd_keras.usage.CommandError` (e.g. a dataset
with broken files) exit with their own status.  No traceback for either.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# command module -> imported lazily so `--help` stays fast and commands are independent
COMMAND_MODULES = (
    "ssd_keras.experiments.digits.job",   # digits (main job)
    "ssd_keras.training.cli",        # train
    "ssd_keras.evaluation.cli",      # evaluate
    "ssd_keras.data.check",          # check-data
    "ssd_keras.data.download",       # download
    "ssd_keras.weights.cli",         # weights (list / fetch / register)
    "ssd_keras.export",              # export (SavedModel / TFLite / ONNX)
    "ssd_keras.predict",             # predict (draw + JSON on your own images)
)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``prog: error: ...``, exit 2), no usage block.

    Sub-parsers inherit the class, so every command reports the same way;
    ``--help`` still shows the full usage.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _run_command(args) -> int:
    """``args.func(args)``, with :class:`~ssd_keras.usage.CommandError` as one line + exit status."""
    from ssd_keras.usage import CommandError

    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"{args.command}: {error}", file=sys.stderr, flush=True)
        return error.exit_status


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
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
    parser = OneLineErrorParser(prog=command)
    register(parser.add_subparsers(dest="command"))
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args([command, *argv])
    return _run_command(args)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _run_command(args)


if __name__ == "__main__":
    sys.exit(main())
