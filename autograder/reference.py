"""The reference solutions, read from the ``solutions/`` notebooks: their one source.

Only instructors have ``solutions/``; students never need it. The setup cells
(read-only, not graded) and the solution cells are run, in order, in a fresh
namespace; test cells and scratch cells are skipped.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

from . import conventions
from .config import course_root


def notebook_path(assignment: str, root: Path | None = None) -> Path:
    return (root or course_root()) / "solutions" / assignment / f"{assignment}.ipynb"


def reference_sources(notebook: dict) -> list[str]:
    """The code cells that make up the reference: setup cells and solution cells."""
    return [
        conventions.source(cell)
        for cell in notebook["cells"]
        if conventions.is_setup(cell) or conventions.solution_of(cell) is not None
    ]


@functools.cache
def load(assignment: str) -> SimpleNamespace:
    path = notebook_path(assignment)
    if not path.is_file():
        raise FileNotFoundError(f"The reference notebook {path} is missing: hidden checks need solutions/.")
    namespace: dict = {"__name__": f"reference_{assignment}"}
    # Plain JSON rather than nbformat: importing nbformat's validator costs ~2 s in every graded kernel.
    for source in reference_sources(json.loads(path.read_text(encoding="utf-8"))):
        exec(compile(source, str(path), "exec"), namespace)
    return SimpleNamespace(**namespace)
