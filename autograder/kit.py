"""The student kit: a pure-Python wheel of the check engine that reaches no reference answer.

``python -m autograder kit`` (or ``make kit``) stages a copy of this package without the
instructor's modules (``INSTRUCTOR_ONLY``: the reference loader, grading, the sandbox, the
release and class-grading tools, nbgrader's configuration, this file), builds it with
setuptools as the distribution ``transformer-course-kit`` and refuses to write the wheel if it holds a distinctive line of
any exercise's solution. The kit keeps what a student's notebook uses: ``check``, the stored
fixtures (the reference's visible outputs and the catalogues' wrong outputs, computed when the
fixtures were made), the exercise descriptions and the lent components.

A distinctive line of a solution is a statement of a solution cell that is not in the student
notebook, not an attribute definition that the contract fixes (``self.W_q = nn.Linear(...)``)
and not trivial (``return out``, ``loss.backward()``). ``leaks`` finds them, whitespace aside,
as whole lines of a wheel's or a built site's files; the tests run it on both.
"""

from __future__ import annotations

import ast
import html
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import conventions
from .config import course_root

DISTRIBUTION = "transformer-course-kit"
PACKAGE = Path(__file__).resolve().parent
INSTRUCTOR_ONLY = (
    "reference.py",
    "grading.py",
    "sandbox.py",
    "preflight.py",
    "grade_class.py",
    "release.py",
    "authoring.py",
    "nbconfig.py",
    "kit.py",
)
DEPENDENCIES = (
    "torch>=2.3",
    "einops>=0.8",
    "numpy",
    "safetensors>=0.4",
    "nbformat>=5.10",
    "nbclient>=0.10",
    "ipykernel>=6.29",
    "matplotlib>=3.8",
    "ipywidgets>=8.1,<9",
)
# The steps a statement can take: a statement that takes at most one is too plain to give an
# answer away (``return out``, ``loss.backward()``, ``weights = torch.softmax(scores, dim=-1)``,
# ``x = layer(x, mask)``); one that composes two or more is the answer's own.
_STEPS = (
    ast.Call,
    ast.BinOp,
    ast.Subscript,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.IfExp,
    ast.Lambda,
    ast.comprehension,
    ast.AugAssign,
    ast.Starred,
)


def version() -> str:
    import tomllib

    return tomllib.loads((course_root() / "pyproject.toml").read_text())["project"]["version"]


def wheel_name() -> str:
    return f"{DISTRIBUTION.replace('-', '_')}-{version()}-py3-none-any.whl"


def default_output() -> Path:
    """Where ``make kit`` puts the wheel; the book publishes this folder's files at the site's root."""
    return course_root() / "_build" / "kit"


# --- What counts as an answer ---------------------------------------------------------------


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _without_comments(code: str) -> str:
    lines = code.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return code
    for token in reversed(tokens):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col].rstrip() + "\n"
    return "".join(lines)


def _plain_value(node: ast.AST) -> bool:
    return isinstance(node, (ast.Name, ast.Constant, ast.Attribute))


def _fixed_by_contract(statement: ast.stmt) -> bool:
    """``self.W_q = nn.Linear(d_model, d_model, bias=False)``, ``self.d_model = d_model``: the syllabus
    fixes the attribute and what it holds; only plain names and constants go in."""
    if not isinstance(statement, ast.Assign):
        return False
    targets = [t for target in statement.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
    if not all(
        isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self" for t in targets
    ):
        return False
    return _plain_definition(statement.value)


def _plain_definition(value: ast.AST) -> bool:
    """Names, constants, a constructor of names and constants, or one of two of them by a plain
    condition (``nn.LayerNorm(d_model) if norm_first else None``: what the contract says in words)."""
    if isinstance(value, ast.Tuple):
        return all(_plain_value(item) for item in value.elts)
    if isinstance(value, ast.Call):
        return all(_plain_value(a) for a in value.args) and all(_plain_value(k.value) for k in value.keywords)
    if isinstance(value, ast.IfExp):
        return _plain_value(value.test) and _plain_definition(value.body) and _plain_definition(value.orelse)
    return _plain_value(value)


def _steps(statement: ast.stmt) -> int:
    """How many operations ``statement`` composes (``-1`` is a constant, not a step)."""
    return sum(
        isinstance(node, _STEPS) and not (isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant))
        for node in ast.walk(statement)
    )


def _trivial(statement: ast.stmt) -> bool:
    return _steps(statement) < 2


def _statements(region: str) -> list[str]:
    """The simple statements of a solution region, each as its source text (continuation lines
    included). Compound statements count by their bodies: ``for layer in self.layers:`` alone says little."""
    code = textwrap.dedent(_without_comments(region))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return [line for line in code.splitlines() if line.strip()]
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.stmt)
            and not hasattr(node, "body")
            and not _fixed_by_contract(node)
            and not _trivial(node)
        ):
            found.append(ast.get_source_segment(code, node))
    return found


def distinctive_lines(assignment: str, root: Path | None = None) -> dict[str, list[str]]:
    """Exercise name -> the whitespace-free distinctive statements of its solution cell."""
    root = root or course_root()
    solutions = json.loads((root / "solutions" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    student = json.loads((root / "exercises" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    given = _Lines(_lines(Path(f"{assignment}.ipynb"), json.dumps(student)))
    answers = {}
    for cell in solutions["cells"]:
        name = conventions.solution_of(cell)
        if name is not None:
            regions = conventions.solution_regions(conventions.source(cell))
            statements = {_squeeze(s) for region in regions for s in _statements(region)}
            answers[name] = sorted(s for s in statements if not given.holds(s))
    return answers


# --- Where an answer could hide ---------------------------------------------------------------


def _lines(path: Path, text: str) -> list[str]:
    """A file's lines as a reader sees them, without comments and whitespace: a page's text
    without its tags, a notebook's cells, a Python file's code, any other file as it is."""
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text).get("cells", [])
            text = "\n".join(
                _without_comments(conventions.source(c)) if c.get("cell_type") == "code" else conventions.source(c)
                for c in cells
            )
        except (ValueError, AttributeError, TypeError):
            pass
    elif path.suffix == ".py":
        text = _without_comments(text)
    else:
        if path.suffix in (".html", ".htm", ".xml", ".svg"):
            text = html.unescape(re.sub(r"<[^>]*>", "", text))
        text = re.sub(r"#.*", "", text)  # code shown on a page keeps its comments
    return [_squeeze(line).removesuffix("\\") for line in text.splitlines()]  # a continuation's backslash


class _Lines:
    """A file's whitespace-free lines, indexed so that a statement is looked up, not scanned for."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.where: dict[str, list[int]] = {}
        for number, line in enumerate(lines):
            if line:
                self.where.setdefault(line, []).append(number)

    def holds(self, statement: str) -> bool:
        """Whether ``statement`` (whitespace-free) is one whole line or several consecutive whole lines."""
        for end in range(1, len(statement) + 1):
            for first in self.where.get(statement[:end], ()):
                joined, last = statement[:end], first
                while len(joined) < len(statement) and last + 1 < len(self.lines):
                    last += 1
                    joined += self.lines[last]
                if joined == statement:
                    return True
        return False


@dataclass(frozen=True)
class Leak:
    assignment: str
    exercise: str
    statement: str
    file: str


def leaks(files: dict[str, bytes], root: Path | None = None) -> tuple[list[Leak], dict[str, tuple[int, int]]]:
    """Every distinctive solution line found in ``files`` (name -> content), and per exercise
    (found, distinctive): how much of its solution the files hold."""
    from .exercises import ASSIGNMENTS

    texts = {name: _Lines(_lines(Path(name), content.decode("utf-8", "ignore"))) for name, content in files.items()}
    found, measure = [], {}
    for assignment in ASSIGNMENTS:
        for exercise, statements in distinctive_lines(assignment, root).items():
            hits = {(s, name) for s in statements for name, lines in texts.items() if lines.holds(s)}
            found += [Leak(assignment, exercise, s, name) for s, name in sorted(hits)]
            measure[exercise] = (len({s for s, _ in hits}), len(statements))
    return found, measure


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- Building the wheel --------------------------------------------------------------------


def _pyproject() -> str:
    dependencies = ", ".join(f'"{d}"' for d in DEPENDENCIES)
    return textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{DISTRIBUTION}"
        version = "{version()}"
        description = "The student kit of the Build a Transformer course: visible checks, fixtures, lent components"
        requires-python = ">=3.10"
        dependencies = [{dependencies}]

        [tool.setuptools.packages.find]
        include = ["autograder*"]

        [tool.setuptools.package-data]
        "*" = ["*.safetensors"]
        """)


def stage(destination: Path) -> Path:
    """A copy of the package as the kit ships it, with its pyproject.toml, under ``destination``."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", *INSTRUCTOR_ONLY)
    shutil.copytree(PACKAGE, destination / "autograder", ignore=skip)
    (destination / "pyproject.toml").write_text(_pyproject())
    return destination


def build(output: Path | None = None) -> Path:
    """Build the kit's wheel into ``output``; raise RuntimeError if it would hand out an answer."""
    output = Path(output or default_output()).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        staged = stage(Path(scratch) / "kit")
        built = Path(scratch) / "dist"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--wheel-dir",
                str(built),
                str(staged),
            ],
            capture_output=True,
            text=True,
            cwd=scratch,
        )
        if result.returncode:
            raise RuntimeError(f"pip could not build the kit:\n{result.stderr or result.stdout}")
        wheel = built / wheel_name()
        found, _ = leaks(wheel_files(wheel))
        if found:
            named = "; ".join(f"{leak.file} holds a line of {leak.exercise}'s solution" for leak in found[:5])
            raise RuntimeError(f"The kit would hand out answers, so it was not written: {named}.")
        output.mkdir(parents=True, exist_ok=True)
        for old in output.glob(f"{DISTRIBUTION.replace('-', '_')}-*.whl"):
            old.unlink()
        return Path(shutil.copy2(wheel, output / wheel.name))
