"""How the checks look and score inside a real Jupyter kernel (what students and nbgrader see)."""

from __future__ import annotations

from conftest import ROOT
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook


def run_cells(*sources: str):
    notebook = new_notebook(cells=[new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(notebook, timeout=120, allow_errors=True, resources={"metadata": {"path": str(ROOT)}}).execute()
    return notebook.cells


def test_a_failed_check_is_an_error_with_no_traceback_and_a_passed_one_prints_a_tick():
    wrong, right = run_cells(
        "import torch\nfrom autograder import check\ncheck('softmax', lambda x, dim=-1: x.exp() / x.exp().sum())",
        "def softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True)).exp()\n    return e / e.sum(dim, keepdim=True)\n"
        "check('softmax', softmax)",
    )
    (error,) = [o for o in wrong.outputs if o.output_type == "error"]
    assert error.ename == "CheckFailure"
    assert len(error.traceback) == 1 and "File" not in error.traceback[0]
    assert "sum runs over all entries" in error.traceback[0]
    assert not [o for o in right.outputs if o.output_type == "error" or getattr(o, "name", "") == "stderr"]
    assert "softmax: visible checks passed" in "".join(o.get("text", "") for o in right.outputs)


def test_warnings_from_student_code_do_not_reach_stderr():
    """nbgrader scores any stderr in a test cell as a failure: the checks report warnings on stdout."""
    (cell,) = run_cells(
        "import warnings, torch\nfrom autograder import check\n"
        "def softmax(x, dim=-1):\n    warnings.warn('deprecated thing', FutureWarning)\n"
        "    e = (x - x.amax(dim, keepdim=True)).exp()\n    return e / e.sum(dim, keepdim=True)\n"
        "check('softmax', softmax)"
    )
    assert not [o for o in cell.outputs if getattr(o, "name", "") == "stderr" or o.output_type == "error"]
    assert "Note: your code raised a warning: FutureWarning: deprecated thing" in "".join(
        o.get("text", "") for o in cell.outputs
    )
