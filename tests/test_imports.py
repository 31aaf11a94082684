"""Import guards: every module imports on its own, and the weights code sits above the models.

An import cycle shows up as an ``ImportError`` ("partially initialized module")
only for some import orders, so the package's modules are imported in a fresh
interpreter in a random order (the seed is in the failure message).
"""
import ast
import os
import random
import subprocess
import sys
import textwrap

import ssd_keras

PACKAGE_DIR = os.path.dirname(os.path.abspath(ssd_keras.__file__))


def _module_names():
    """Every ``ssd_keras`` module and package, from the files (nothing imported)."""
    names = []
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if os.path.isfile(os.path.join(folder, d, "__init__.py")))
        parts = ["ssd_keras", *os.path.relpath(folder, PACKAGE_DIR).split(os.sep)]
        parts = [p for p in parts if p != "."]
        for filename in sorted(files):
            if filename.endswith(".py"):
                stem = filename[:-3]
                names.append(".".join(parts if stem == "__init__" else [*parts, stem]))
    return names


def test_every_module_imports_in_a_fresh_process_in_a_random_order():
    names = _module_names()
    assert "ssd_keras.weights.loading" in names and "ssd_keras.models.vgg" in names
    seed = random.randrange(1 << 30)
    order = names[:]
    random.Random(seed).shuffle(order)
    code = textwrap.dedent("""
        import importlib, sys, traceback
        failed = []
        for name in sys.argv[1:]:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as error:   # an optional third-party package is fine
                if (error.name or "").split(".")[0] == "ssd_keras":
                    failed.append(f"{name}: {error!r}")
            except Exception as error:
                failed.append(f"{name}: {error!r}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code, *order], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, (f"import order seed {seed} (random.Random(seed).shuffle of "
                                    f"the sorted module list):\n{result.stdout}"
                                    f"{result.stderr[-2000:]}")


def _imported_modules(path):
    """Names of the ``ssd_keras`` modules that a file imports, anywhere in it (lazy imports too).

    The package uses absolute imports only; a relative one is an error here.
    """
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: relative import"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "ssd_keras"}


def test_models_never_import_weights_code():
    """One way: ``weights`` (hub -> loading -> legacy -> by_name) uses ``models``, never back."""
    offenders = {}
    folder = os.path.join(PACKAGE_DIR, "models")
    for filename in sorted(os.listdir(folder)):
        if filename.endswith(".py"):
            bad = sorted(name for name in _imported_modules(os.path.join(folder, filename))
                         if name == "ssd_keras.weights" or name.startswith("ssd_keras.weights."))
            if bad:
                offenders[f"ssd_keras/models/{filename}"] = bad
    assert not offenders, f"models must not import the weights package: {offenders}"


def test_weights_modules_import_one_way():
    """Inside ``ssd_keras.weights``: cli -> hub -> loading -> legacy -> by_name, never upward."""
    layers = ["by_name", "legacy", "loading", "hub", "cli"]
    folder = os.path.join(PACKAGE_DIR, "weights")
    for rank, module in enumerate(layers):
        imported = _imported_modules(os.path.join(folder, f"{module}.py"))
        above = {f"ssd_keras.weights.{m}" for m in layers[rank:]}
        assert not (imported & above), f"ssd_keras/weights/{module}.py imports {imported & above}"
        assert "ssd_keras.weights" not in imported, f"{module}.py imports the package face"
