"""The nbgrader source notebooks, the exercise tables and the exercise reference, made from two sources.

An assignment's instructions, hints and reference solutions are written once, in its text
notebook ``solutions/<a>/<a>.md`` (MyST Markdown, read with jupytext). Its exercises' points,
difficulty, minutes and one-line task are declared once, on their ``Exercise(...)`` in
``autograder/exercises/<a>.py``. From the two, this module makes:

- ``solutions/<a>/<a>.ipynb``, the notebook nbgrader reads: every cell with its nbgrader
  metadata, every exercise's visible and hidden test cells, and the introduction's exercise table;
- the exercise table of the chapter page ``book/<a>.md`` (between two marker lines), and the
  "N minutes of exercises" of its overview box;
- the book's exercise reference, ``book/exercise_reference.md``.

All three are committed (stock nbgrader works from a fresh clone) and ``python -m autograder
notebooks`` writes them again; tests/test_authoring.py fails when a committed copy is stale.

The text notebook's conventions (AUTHORING.md):

- a code cell tagged ``setup`` is a locked set-up cell (imports, lent components);
- a code cell that defines (``def`` or ``class``, at the top level) one of the assignment's
  declared exercises is that exercise's solution cell, with its answer between the markers;
- any other code cell is an ordinary cell the student may change;
- the line ``<!-- exercise table -->`` in a markdown cell becomes the exercise table;
- an exercise's test cells close its section: they come before the next markdown cell after
  its solution cell.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from . import conventions
from .config import course_root
from .forbidden import capabilities
from .spec import Exercise

TABLE_PLACEHOLDER = "<!-- exercise table -->"
SETUP_TAG = "setup"
BOOK_TABLE_BEGIN = "% BEGIN exercise table: made by `python -m autograder notebooks` from the exercises' declarations"
BOOK_TABLE_END = "% END exercise table"
REFERENCE_PAGE = Path("book") / "exercise_reference.md"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
STUB = "raise NotImplementedError()"


class AuthoringError(Exception):
    """A text notebook or a declaration that cannot make a notebook: one sentence says what to change."""


def text_source(assignment: str, root: Path | None = None) -> Path:
    return (root or course_root()) / "solutions" / assignment / f"{assignment}.md"


def notebook_path(assignment: str, root: Path | None = None) -> Path:
    return (root or course_root()) / "solutions" / assignment / f"{assignment}.ipynb"


def assignments(root: Path | None = None) -> list[str]:
    """The assignments that have a text notebook."""
    root = root or course_root()
    return sorted(p.name for p in (root / "solutions").iterdir() if text_source(p.name, root).is_file())


# --- Reading the text notebook -----------------------------------------------------------


@dataclass
class Section:
    """One exercise as the text notebook writes it: its declaration and its solution cell's source."""

    exercise: Exercise
    source: str

    @property
    def name(self) -> str:
        return self.exercise.name


def _declared(assignment: str) -> dict[str, Exercise]:
    from .exercises import of_assignment

    return {exercise.name: exercise for exercise in of_assignment(assignment)}


def _defines(source: str, names: dict[str, Exercise], where: str) -> list[str]:
    """The declared exercises that a code cell defines at its top level."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise AuthoringError(f"{where}: a code cell is not valid Python ({error.msg}, line {error.lineno}).") from None
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names
    ]


def read(assignment: str, root: Path | None = None) -> tuple[nbformat.NotebookNode, list[Section]]:
    """The text notebook, and its exercises in the order it gives them."""
    path = text_source(assignment, root)
    if not path.is_file():
        raise AuthoringError(f"{assignment} has no text notebook: expected {path}.")
    text = jupytext.read(path, fmt="md:myst")
    declared = _declared(assignment)
    sections = []
    for cell in text.cells:
        if cell.cell_type != "code" or SETUP_TAG in cell.metadata.get("tags", []):
            continue
        defined = _defines(cell.source, declared, path.name)
        if len(defined) > 1:
            raise AuthoringError(
                f"{path.name}: one code cell defines `{defined[0]}` and `{defined[1]}`; give each exercise its own cell."
            )
        for name in defined:
            if any(section.name == name for section in sections):
                raise AuthoringError(f"{path.name}: `{name}` is defined in two code cells; keep one solution cell.")
            sections.append(Section(declared[name], cell.source))
    missing = [name for name in declared if name not in {s.name for s in sections}]
    if missing:
        raise AuthoringError(
            f"{path.name}: no code cell defines `{missing[0]}`, which autograder/exercises/{assignment}.py declares."
        )
    for section in sections:
        _check_section(section, path.name)
    return text, sections


def _check_section(section: Section, where: str) -> None:
    exercise, lines = section.exercise, [line.strip() for line in section.source.splitlines()]
    if conventions.BEGIN_SOLUTION not in lines or conventions.END_SOLUTION not in lines:
        raise AuthoringError(
            f"{where}: the solution cell of `{exercise.name}` has no `{conventions.BEGIN_SOLUTION}` ... "
            f"`{conventions.END_SOLUTION}` lines around its answer."
        )
    unset = [field for field in ("points", "difficulty", "minutes") if getattr(exercise, field) is None]
    if unset or not exercise.task:
        field = unset[0] if unset else "task"
        raise AuthoringError(
            f"`{exercise.name}` declares no {field}: give Exercise({exercise.name!r}, ..., points=(visible, hidden), "
            "difficulty=1-5, minutes=..., task='what the student writes') in its exercise module."
        )


# --- The exercise table --------------------------------------------------------------------


def stub(source: str) -> str:
    """A solution cell's source as the student gets it: each answer replaced by ``raise NotImplementedError()``."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == conventions.BEGIN_SOLUTION:
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + STUB)
        elif stripped == conventions.END_SOLUTION:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def _definition(source: str, name: str) -> ast.FunctionDef | ast.ClassDef:
    tree = ast.parse(stub(source))
    return next(n for n in tree.body if getattr(n, "name", None) == name)


def _parameters(arguments: ast.arguments, code: str, skip_self: bool) -> str:
    """A parameter list without annotations, each default as the stub writes it."""

    def one(argument: ast.arg, default: ast.expr | None) -> str:
        return argument.arg if default is None else f"{argument.arg}={ast.get_source_segment(code, default)}"

    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    parts = [one(a, d) for a, d in zip(positional, defaults)][1 if skip_self else 0 :]
    if arguments.vararg:
        parts.append(f"*{arguments.vararg.arg}")
    elif arguments.kwonlyargs:
        parts.append("*")
    parts += [one(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults)]
    if arguments.kwarg:
        parts.append(f"**{arguments.kwarg.arg}")
    return ", ".join(parts)


def call_signature(section: Section) -> str:
    """How the exercise is called, from its stub: ``softmax(x, dim=-1)``, ``SelfAttention(d_model, d_k)``."""
    code, node = stub(section.source), _definition(section.source, section.name)
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        return node.name if init is None else f"{node.name}({_parameters(init.args, code, skip_self=True)})"
    return f"{node.name}({_parameters(node.args, code, skip_self=False)})"


def exercise_table(sections: list[Section]) -> str:
    """The exercise table of the notebook's introduction and of the chapter page."""
    rows = ["| exercise | what you write | difficulty (1-5) | minutes | points |", "|---|---|---|---|---|"]
    for s in sections:
        ex = s.exercise
        rows.append(f"| `{call_signature(s)}` | {ex.task} | {ex.difficulty} | {ex.minutes} | {sum(ex.points)} |")
    return "\n".join(rows)


# --- The nbgrader notebook -------------------------------------------------------------------


def _nbgrader(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def check_cells(exercise: Exercise) -> list:
    """The visible and the hidden test cell of an exercise, with the points it declares."""
    name, (visible, hidden) = exercise.name, exercise.points
    hidden_source = "\n".join(
        [
            f"# The hidden checks of `{name}` run when your notebook is graded.",
            conventions.BEGIN_HIDDEN,
            "from autograder import check_hidden",
            f'check_hidden("{name}", {name})',
            conventions.END_HIDDEN,
        ]
    )
    return [
        new_code_cell(
            f'check("{name}", {name})',
            metadata=_nbgrader(conventions.test_id(name), grade=True, locked=True, points=visible),
        ),
        new_code_cell(
            hidden_source,
            metadata=_nbgrader(conventions.test_id(name, conventions.HIDDEN), grade=True, locked=True, points=hidden),
        ),
    ]


def _with_table(source: str, table: str) -> str:
    return "\n".join(table if line.strip() == TABLE_PLACEHOLDER else line for line in source.splitlines())


def build(assignment: str, root: Path | None = None) -> nbformat.NotebookNode:
    """The nbgrader source notebook that the text notebook and the declarations make."""
    text, sections = read(assignment, root)
    where = text_source(assignment, root).name
    table = exercise_table(sections)
    by_source = {section.source: section for section in sections}
    cells, pending, setups = [], [], 0
    tables = sum(
        line.strip() == TABLE_PLACEHOLDER
        for c in text.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
    )
    if tables != 1:
        raise AuthoringError(
            f"{where}: put the line `{TABLE_PLACEHOLDER}` once in a markdown cell, not {tables} times."
        )
    for cell in text.cells:
        if cell.cell_type == "markdown":
            cells += pending
            pending = []
            cells.append(new_markdown_cell(_with_table(cell.source, table)))
        elif SETUP_TAG in cell.metadata.get("tags", []):
            setups += 1
            grade_id = "setup" if setups == 1 else f"setup_{setups}"
            cells.append(new_code_cell(cell.source, metadata=_nbgrader(grade_id, locked=True)))
        elif cell.source in by_source:
            exercise = by_source[cell.source].exercise
            cells.append(new_code_cell(cell.source, metadata=_nbgrader(exercise.name, solution=True)))
            pending += check_cells(exercise)
        else:
            cells.append(new_code_cell(cell.source))
    cells += pending
    for number, cell in enumerate(cells):  # ids that do not change from one generation to the next
        cell.id = conventions.grade_id(cell) or f"{cell.cell_type}-{number}"
    return new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})


def rendered(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


# --- The book ------------------------------------------------------------------------------------


def chapter_page(assignment: str, root: Path | None = None) -> Path:
    return (root or course_root()) / "book" / f"{assignment}.md"


def with_book_table(page: str, table: str, where: str) -> str:
    """The chapter page with the generated table between its marker lines."""
    pattern = re.compile(rf"^{re.escape(BOOK_TABLE_BEGIN)}\n.*?^{re.escape(BOOK_TABLE_END)}$", re.M | re.S)
    if len(pattern.findall(page)) != 1:
        raise AuthoringError(
            f"{where}: the `## Exercises` section needs the exercise table's two marker lines, "
            f"`{BOOK_TABLE_BEGIN}` and `{BOOK_TABLE_END}`, once."
        )
    return pattern.sub(lambda _: f"{BOOK_TABLE_BEGIN}\n\n{table}\n\n{BOOK_TABLE_END}", page)


def with_exercise_minutes(page: str, minutes: int, where: str) -> str:
    """The chapter page with its overview's "N minutes of exercises" set to the sum of the declared minutes."""
    phrase = re.compile(r"\b\d+ minutes of exercises\b")
    if len(phrase.findall(page)) != 1:
        raise AuthoringError(
            f"{where}: the overview box should say once how many minutes of exercises the chapter has."
        )
    return phrase.sub(f"{minutes} minutes of exercises", page)


def _title(assignment: str, root: Path | None) -> str:
    page = chapter_page(assignment, root)
    if page.is_file():
        match = re.search(r"^# (.+)$", page.read_text(encoding="utf-8"), re.M)
        if match:
            return match.group(1)
    return assignment


def _interface(section: Section) -> str:
    """The stub's definition lines and docstrings (for a class, also its methods'), bodies left out."""
    lines = stub(section.source).splitlines()
    node = _definition(section.source, section.name)

    def header(n, indent=""):
        first = (n.decorator_list[0].lineno if n.decorator_list else n.lineno) - 1
        body = n.body[0]
        has_doc = (
            isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant) and isinstance(body.value.value, str)
        )
        last = body.end_lineno if has_doc else body.lineno - 1
        return lines[first:last]

    out = header(node)
    if isinstance(node, ast.ClassDef):
        for method in node.body:
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out += [""] + header(method) + [" " * (method.col_offset + 4) + "..."]
    else:
        out.append(" " * (node.col_offset + 4) + "...")
    return "\n".join(out)


def _prose(text: str) -> str:
    """A property's description as Markdown: ``j*d_head`` and ``<unk>`` stay as they are written."""
    return re.sub(r"([*<])", r"\\\1", text)


def _what_is_checked(exercise: Exercise) -> list[str]:
    said = [_prose(prop.description) for prop in exercise.properties]
    cases = exercise.make_cases(torch.Generator().manual_seed(0), hidden=False) if exercise._cases else []
    visible = len(cases)
    if visible:
        dtypes = " in float32 and in float64" if len(exercise.dtypes) > 1 else ""
        said.append(
            f"the results equal the reference's{dtypes}: on {visible} visible cases (stored with the kit) and, "
            "when the notebook is graded, on hidden cases drawn afresh"
        )
    return said


def reference_page(root: Path | None = None) -> str:
    """The book's exercise reference: the whole contract of every exercise, from the stubs and the declarations."""
    out = [
        "# Exercise reference",
        "",
        "Every exercise of the course: how it is called, what its checks look at, what it is worth and what",
        "it may not use. This page is made from the exercise notebooks' stubs and the exercises' declarations",
        "(`python -m autograder notebooks`), so it says what the checks check.",
    ]
    for assignment in assignments(root):
        _, sections = read(assignment, root)
        out += ["", f"## [{_title(assignment, root)}]({assignment}.md)", ""]
        out += [
            f"Notebook `{assignment}`: {len(sections)} exercises, {sum(sum(s.exercise.points) for s in sections)} points."
        ]
        for section in sections:
            ex = section.exercise
            visible, hidden = ex.points
            out += ["", f"### `{call_signature(section)}`", "", ex.task[0].upper() + ex.task[1:] + ".", ""]
            out += ["```python", _interface(section), "```", ""]
            out.append(
                f"**Points** {visible} visible + {hidden} hidden = {visible + hidden}. **Difficulty** {ex.difficulty} "
                f"of 5. **Minutes** about {ex.minutes}."
            )
            out += ["", "**Checked:**", ""] + [f"- {said}" for said in _what_is_checked(ex)]
            if ex.mistakes:
                out += ["", f"A wrong answer that matches one of {len(ex.mistakes)} known mistakes is named."]
            if ex.forbidden:
                names = ", ".join(f"`{c.name}`" for c in capabilities(ex.forbidden))
                why = f": {ex.why_forbidden}." if ex.why_forbidden else "."
                out += ["", f"**Not allowed:** {names}{why}"]
    return "\n".join(out) + "\n"


# --- Writing everything ----------------------------------------------------------------------------


def outputs(assignment: str, root: Path | None = None) -> dict[Path, str]:
    """Each file that ``assignment`` makes, with the text it should hold."""
    root = root or course_root()
    made = {notebook_path(assignment, root): rendered(build(assignment, root))}
    page = chapter_page(assignment, root)
    if page.is_file():
        _, sections = read(assignment, root)
        text = with_book_table(page.read_text(encoding="utf-8"), exercise_table(sections), page.name)
        minutes = sum(section.exercise.minutes for section in sections)
        made[page] = with_exercise_minutes(text, minutes, page.name)
    return made


def _made(names: list[str] | None, root: Path) -> dict[Path, str]:
    made = {}
    for assignment in names or assignments(root):
        made.update(outputs(assignment, root))
    made[root / REFERENCE_PAGE] = reference_page(root)
    return made


def stale(root: Path | None = None, names: list[str] | None = None) -> list[Path]:
    """The generated files whose committed text differs from what the sources make now."""
    made = _made(names, root or course_root())
    return [path for path, text in made.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]


def write(names: list[str] | None = None, root: Path | None = None) -> list[Path]:
    """Write the generated files of ``names`` (default: all) and the reference page; return those that changed."""
    made = _made(names, root or course_root())
    changed = [path for path, text in made.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]
    for path in changed:
        path.write_text(made[path], encoding="utf-8")
    return changed
