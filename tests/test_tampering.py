"""The tampering scan reads what code does, never its words (unit tests of autograder/tampering.py).

Its cases are text notebooks of student code in tests/tampering/: honest code that only names what
tampering reaches for (honest.md), and code that reaches for it, with what the scan must say (tampering.md).

The graded end-to-end proofs are tests/test_grading_attacks.py (tampering earns nothing and is
listed for review) and tests/test_nbgrader_flow.py (honest notebooks score full marks).
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import ROOT

from autograder import tampering
from autograder.grading import _student_code


def load_cases(path: Path) -> dict[str, tuple[str, str | None]]:
    """{case: (source, finding or None)} from a MyST text notebook of tests/tampering/: a code cell per case,
    with the options `case` (its name, in test ids) and, where the scan must find tampering, `finding`
    (what it says after the cell's number)."""
    cases = {}
    for cell in (c for c in jupytext.read(path, fmt="md:myst").cells if c.cell_type == "code"):
        if "case" not in cell.metadata or set(cell.metadata) - {"case", "finding"}:
            raise ValueError(
                f"{path.name}: a code cell has options {sorted(cell.metadata)}; it needs `case`, and may have `finding`"
            )
        cases[cell.metadata["case"]] = (cell.source + "\n", cell.metadata.get("finding"))
    return cases


HONEST = load_cases(ROOT / "tests" / "tampering" / "honest.md")
TAMPERING = load_cases(ROOT / "tests" / "tampering" / "tampering.md")


def test_every_tampering_case_says_what_is_found_and_no_honest_case_does():
    assert len(HONEST) >= 15 and len(TAMPERING) >= 28
    assert all(finding for _, finding in TAMPERING.values())
    assert not any(finding for _, finding in HONEST.values())


@pytest.mark.parametrize(
    "options", [":finding: line 1 uses `sys.modules`", ":case: a\n:line: 1"], ids=["no-case", "unknown"]
)
def test_a_malformed_case_is_refused_with_one_sentence(tmp_path, options):
    path = tmp_path / "cases.md"
    path.write_text(f"Cases.\n\n```{{code-cell}} ipython3\n{options}\nimport sys\n```\n")
    with pytest.raises(ValueError, match="it needs `case`, and may have `finding`"):
        load_cases(path)


@pytest.mark.parametrize("source", [source for source, _ in HONEST.values()], ids=HONEST.keys())
def test_honest_code_is_not_tampering(source):
    assert tampering.scan([(0, source)]) == []


@pytest.mark.parametrize("source, finding", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_is_found_with_its_cell_and_line(source, finding):
    found = tampering.scan([(6, source)])
    assert found and str(found[0]) == f"cell 7, {finding}", [str(f) for f in found]


def test_an_import_in_one_cell_counts_in_the_next():
    found = tampering.scan([(2, "import sys as system\n"), (4, "x = 1\nsystem.modules.clear()\n")])
    assert [str(f) for f in found] == ["cell 5, line 2 uses `sys.modules`"]


@pytest.mark.parametrize("path", sorted(ROOT.glob("solutions/*/*.ipynb")), ids=lambda p: p.parent.name)
def test_no_reference_notebook_is_tampering(path):
    nb = nbformat.read(path, as_version=4)  # scanned as grading scans it: the cells a student can change
    assert tampering.scan((index, source) for index, _, source in _student_code(nb)) == []
