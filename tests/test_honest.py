"""The honest corpus (tests/honest/) is large enough, and its loader puts every edit where it says.

The corpus itself is graded with the stock-nbgrader flow of each chapter it names
(tests/test_nbgrader_flow.py, `test_honest_notebooks_score_full_marks`): its notebooks join
that chapter's class, so the class is generated and graded once.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from honest_corpus import CHAPTERS, SUBMISSIONS, apply_variant, load_variant

from autograder import conventions


def test_the_corpus_is_large_enough():
    assert len(SUBMISSIONS) >= 30 and len(CHAPTERS) >= 8


# --- The loader of tests/honest/ --------------------------------------------------------------


def _tiny_notebook() -> nbformat.NotebookNode:
    """Two exercises, `a` and `b`, each a solution cell followed by its visible test cell."""
    cells = []
    for name in ("a", "b"):
        for gid, source in (
            (name, f'def {name}():\n    """Doc."""\n    return 1'),
            (conventions.test_id(name), f"check({name!r})"),
        ):
            cell = nbformat.v4.new_code_cell(source)
            cell.metadata["nbgrader"] = {"grade_id": gid}
            cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def _variant(tmp_path: Path, body: str, front: str = "assignments: [ch00_warmup]\n") -> Path:
    path = tmp_path / "variant.md"
    path.write_text(f"---\n{front}---\n\nWhat the student does.\n\n{body}")
    return path


def _cell(option: str, code: str) -> str:
    return f"```{{code-cell}} ipython3\n:{option}\n{code}\n```\n\n"


def test_every_edit_of_a_variant_lands_where_it_says(tmp_path):
    body = (
        _cell("prefix: each exercise", "# mine")
        + _cell("suffix: first exercise", "print({exercise!r})")
        + _cell("docstring: b", "Also.")
        + _cell("after: each test", "{exercise}()")
        + _cell("before: test_b", "x = 1")
        + _cell("replace: a", "a = lambda: 1  # of {exercises!r}")
        + _cell("after: last cell", "print([{exercises}])")
    )
    variant = load_variant(_variant(tmp_path, body))
    assert variant.assignments == ("ch00_warmup",) and len(variant.edits) == 7
    nb = _tiny_notebook()
    apply_variant(variant, nb, ["a", "b"])
    assert [c.source for c in nb.cells] == [
        "a = lambda: 1  # of ['a', 'b']\n",
        "check('a')",
        "a()\n",
        '# mine\ndef b():\n    """Also. Doc."""\n    return 1',
        "x = 1\n",
        "check('b')",
        "b()\n",
        "print([a, b])\n",
    ]
    nb = _tiny_notebook()
    apply_variant(load_variant(_variant(tmp_path, _cell("suffix: first exercise", "print({exercise!r})"))), nb, ["a"])
    assert nb.cells[0].source == 'def a():\n    """Doc."""\n    return 1\nprint(\'a\')\n'


@pytest.mark.parametrize(
    "body, front, says",
    [
        (_cell("instead: a", "pass"), "assignments: [ch00_warmup]\n", "needs exactly one of replace"),
        ("```{code-cell} ipython3\npass\n```\n", "assignments: [ch00_warmup]\n", "needs exactly one of replace"),
        (_cell("replace: a", "pass"), "title: no chapters\n", "names no `assignments`"),
    ],
    ids=["unknown-option", "no-option", "no-assignments"],
)
def test_a_malformed_variant_is_refused_with_one_sentence(tmp_path, body, front, says):
    with pytest.raises(ValueError, match=says):
        load_variant(_variant(tmp_path, body, front))


@pytest.mark.parametrize(
    "option, says",
    [("replace: c", "has no cell 'c' to replace"), ("prefix: last cell", "only `after` goes to the last cell")],
    ids=["missing-cell", "prefix-to-the-end"],
)
def test_an_edit_to_a_cell_the_notebook_lacks_is_refused_with_one_sentence(tmp_path, option, says):
    variant = load_variant(_variant(tmp_path, _cell(option, "pass")))
    with pytest.raises(ValueError, match=says):
        apply_variant(variant, _tiny_notebook(), ["a", "b"])
