"""Shared helpers for the project's tests."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _course_root(monkeypatch):
    """Tests see the repository as the course, whatever their working directory."""
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(ROOT))


def env_with_venv(**extra: str) -> dict:
    """The environment for nbgrader commands: the virtualenv first on PATH (nbgrader runs `alembic` by name)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("AUTOGRADER_COURSE_ROOT", None)
    env.update(extra)
    return env


def copy_course(destination: Path) -> Path:
    """A scratch copy of the course, as an instructor's checkout would be."""
    for name in ("solutions", "nbgrader_config.py"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name)
        else:
            shutil.copy(source, destination / name)
    return destination


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")
