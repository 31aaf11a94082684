"""The notebooks are thin narrated drivers (STYLE.md): checked statically, without a kernel.

Each notebook exists, is nbformat 4 with a python3 kernel, has exactly one ``parameters``
cell near the top that sets ``QUICK`` from ``SSD_KERAS_QUICK``, explains itself in markdown,
and keeps library logic out of its code cells (short cells, no long functions or classes).
Outputs are committed cleared, or as one top-to-bottom run of real results (a reader on
GitHub sees them); nbval compares only the cells that say ``# NBVAL_CHECK_OUTPUT``.
Running them is nbval's job: ``python -m pytest notebooks --nbval-lax``.
"""
from __future__ import annotations

import ast
import os

import nbformat
import pytest

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "notebooks")
NOTEBOOKS = (
    "01_train_ssd300_voc.ipynb",
    "02_loss_history.ipynb",
    "03_intermediate_map.ipynb",
    "04_synthetic_digits.ipynb",
    "05_compare_experiments.ipynb",
    "06_inference.ipynb",
)
MAX_CELL_LINES = 15              # a code cell is a few calls
MAX_PARAMETER_LINES = 25         # the parameters cell may list configurations as data
MAX_FUNCTION_LINES = 3           # a lambda-sized helper at most; real code belongs in ssd_keras
PARAMETERS_WITHIN = 3            # the parameters cell is among the first cells
MIN_MARKDOWN_CELLS = 5
MAX_NOTEBOOK_BYTES = 3_000_000  # executed copies keep their figures, within reason
QUICK_SOURCE = 'QUICK = os.environ.get("SSD_KERAS_QUICK") == "1"'


def _load(name):
    return nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)


def _lines(cell):
    return [line for line in cell.source.splitlines() if line.strip()]


def _is_parameters(cell):
    return "parameters" in cell.metadata.get("tags", [])


def _python(cell):
    """The cell's source with IPython magics and shell escapes commented out."""
    return "\n".join("#" + line if line.lstrip().startswith(("%", "!")) else line
                     for line in cell.source.splitlines())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_nbformat4_python3(name):
    path = os.path.join(NOTEBOOK_DIR, name)
    assert os.path.exists(path), f"{name} is missing"
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_title_and_one_parameters_cell_setting_quick(name):
    cells = _load(name).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), \
        f"{name}: the first cell is the title in markdown"
    tagged = [i for i, cell in enumerate(cells) if _is_parameters(cell)]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters', expected 1"
    index = tagged[0]
    assert index <= PARAMETERS_WITHIN, f"{name}: the parameters cell is cell {index}, not near the top"
    assert cells[index].cell_type == "code"
    assert QUICK_SOURCE in cells[index].source, \
        f"{name}: the parameters cell must set {QUICK_SOURCE}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_are_short_calls(name):
    for i, cell in enumerate(_load(name).cells):
        if cell.cell_type != "code":
            continue
        limit = MAX_PARAMETER_LINES if _is_parameters(cell) else MAX_CELL_LINES
        assert len(_lines(cell)) <= limit, \
            f"{name} cell {i}: {len(_lines(cell))} lines (at most {limit}): move logic into ssd_keras"
        tree = ast.parse(_python(cell))   # also: every cell is valid Python
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, \
                    f"{name} cell {i}: {node.name} is {length} lines: library logic belongs in ssd_keras"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_markdown_explains(name):
    cells = _load(name).cells
    markdown = [c for c in cells if c.cell_type == "markdown" and c.source.strip()]
    code = [c for c in cells if c.cell_type == "code"]
    assert len(markdown) >= MIN_MARKDOWN_CELLS, f"{name}: only {len(markdown)} markdown cells"
    assert len(markdown) >= len(code) // 2, \
        f"{name}: {len(markdown)} markdown cells for {len(code)} code cells: narrate the steps"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_cleared_or_as_one_real_run(name):
    """Cleared (small diffs), or the outputs of one top-to-bottom run, so a reader sees results.

    An executed copy (``papermill`` in full mode) numbers its code cells 1, 2, 3 ... in order;
    a notebook with a stale cell out of order, or half cleared, fails.  Cells nbval checks
    (``# NBVAL_CHECK_OUTPUT``) always carry their expected output.
    """
    path = os.path.join(NOTEBOOK_DIR, name)
    assert os.path.getsize(path) <= MAX_NOTEBOOK_BYTES, f"{name}: over {MAX_NOTEBOOK_BYTES} bytes"
    code = [c for c in _load(name).cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            assert cell.outputs, f"{name} code cell {i}: a checked cell needs its expected output"
    counts = [c.execution_count for c in code]
    if all(c.execution_count is None for c in code if "NBVAL_CHECK_OUTPUT" not in c.source):
        unchecked = [i for i, c in enumerate(code)
                     if c.outputs and "NBVAL_CHECK_OUTPUT" not in c.source]
        assert not unchecked, f"{name}: code cells {unchecked} keep outputs of no recorded run"
    else:
        assert counts == list(range(1, len(code) + 1)), \
            f"{name}: execution counts {counts} are not one run from the top"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_quick_mode_keeps_ci_out_of_real_folders(name):
    """Quick runs write under runs/quick or a temp folder, never over a real run or figure."""
    source = next(c.source for c in _load(name).cells if _is_parameters(c))
    for line in source.splitlines():
        if line.startswith(("RUN_", "FIGURES", "MODEL_PATH")) and "if QUICK else" in line:
            quick_value = line.split("=", 1)[1].split("if QUICK else")[0]
            assert "runs/quick" in quick_value or "tempfile" in quick_value, \
                f"{name}: quick mode value of {line.split('=')[0].strip()} is outside runs/quick"
