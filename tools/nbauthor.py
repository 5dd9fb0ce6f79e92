"""Write an nbgrader source notebook (``solutions/<assignment>/<assignment>.ipynb``) from Python.

The notebook is the one source of a chapter's reference solutions and tests; this module
only saves authors from typing nbgrader's cell metadata by hand. See AUTHORING.md:

    import sys; sys.path.insert(0, "tools")
    from nbauthor import md, setup, solution, visible_test, hidden_test, hints, write
    write("solutions/ch04_scaled_dot_product/ch04_scaled_dot_product.ipynb", [md("# ..."), setup("import torch"), ...])
"""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text):
    """A markdown cell."""
    return new_markdown_cell(text.strip("\n"))


def _nbg(**kw):
    """nbgrader cell metadata (schema 3)."""
    base = {"schema_version": 3, "grade": False, "locked": False, "solution": False, "task": False}
    base.update(kw)
    return {"nbgrader": base}


def setup(src, grade_id="setup"):
    """A read-only code cell (imports, helpers): part of the reference, not graded. No IPython magics."""
    return new_code_cell(src.strip("\n"), metadata=_nbg(grade_id=grade_id, locked=True))


def solution(grade_id, src):
    """The exercise's solution cell; grade_id is the exercise name. Mark the answer with ### BEGIN/END SOLUTION."""
    return new_code_cell(src.strip("\n"), metadata=_nbg(grade_id=grade_id, solution=True))


def visible_test(name, points):
    """The graded cell running the visible checks: grade_id test_<name>."""
    return new_code_cell(
        f'check("{name}", {name})', metadata=_nbg(grade_id=f"test_{name}", grade=True, locked=True, points=points)
    )


def hidden_test(name, points):
    """The graded cell running the hidden checks (removed from the student version): grade_id test_<name>_hidden."""
    src = (
        f"# The hidden checks of `{name}` run when your notebook is graded.\n"
        "### BEGIN HIDDEN TESTS\n"
        "from autograder import check_hidden\n"
        f'check_hidden("{name}", {name})\n'
        "### END HIDDEN TESTS"
    )
    return new_code_cell(src, metadata=_nbg(grade_id=f"test_{name}_hidden", grade=True, locked=True, points=points))


def hints(*items):
    """Graduated hints (idea, shapes, pseudocode) as collapsible HTML blocks for a markdown cell."""
    titles = ["Hint 1: the idea", "Hint 2: the shapes", "Hint 3: pseudocode"]
    out = []
    for title, body in zip(titles, items):
        out.append(f"<details>\n<summary>{title}</summary>\n\n{body.strip()}\n\n</details>")
    return "\n\n".join(out)


def write(path, cells):
    """Save the notebook with a python3 kernelspec."""
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.write(nb, path)
