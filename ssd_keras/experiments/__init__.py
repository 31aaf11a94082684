"""Experiments: users of the library, like torchvision's ``references/``.

Each experiment composes the public pieces of :mod:`ssd_keras` (presets,
data readers, ``train``, the evaluators, reporting) into one reproducible
job.  The core never imports this package; only the command line
(:mod:`ssd_keras.__main__`) registers the experiments' commands.
"""
