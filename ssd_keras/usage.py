"""Command-line mistakes as exceptions: one line for the user, no traceback.

Commands raise :class:`UsageError` for a wrong flag value (an unknown preset,
a missing folder, a class name the data does not have, ``--data`` of an
unknown format); :func:`ssd_keras.__main__.main` (and every module's
``main``) prints ``<command>: <message>`` on stderr and exits with status 2,
argparse's status for usage errors.  :class:`CommandError` is the same for
bad input found later (a dataset with broken files), with status 1.
"""
from __future__ import annotations

from typing import Iterable


class CommandError(Exception):
    """A command cannot run on this input; ``main`` prints the message and exits ``exit_status``."""

    exit_status = 1


class UsageError(CommandError):
    """A wrong command-line value (exit status 2); the message names the value at fault."""

    exit_status = 2


def choices(values: Iterable) -> str:
    """``"a, b, c"``: the valid values, for the end of a :class:`UsageError` message."""
    return ", ".join(str(v) for v in values)
