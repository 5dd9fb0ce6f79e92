"""nbgrader's configuration of the course, built in one place.

``nbgrader_config.py``, the file stock nbgrader reads when a command runs from the repository
root, is :func:`configure` applied to nbgrader's config; ``autograder.release`` applies it to a
config of its own, with a scratch gradebook and another release folder. Importing this module
imports neither torch nor the grading engine: the course's preprocessors are named by their
import path, and nbgrader imports them only for the commands that run them.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbgrader
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)
from traitlets.config import Config

COURSE_ID = "build-a-transformer"
# Student stubs: what replaces each ### BEGIN SOLUTION ... ### END SOLUTION region.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
# Any stderr output in a test cell scores 0. The checks themselves print warnings to stdout,
# but torch and numpy may still warn on stderr (deprecations, device notices): drop those.
STDERR_WARNINGS = r"(?m)^.*\b\w*Warning: |^\s*warnings\.warn\("


def configure(c: Config, root: str | Path) -> Config:
    """Fill ``c`` with the settings of the course whose repository is ``root``; returns ``c``."""
    root = str(root)
    c.CourseDirectory.root = root
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "gradebook.db")
    # solutions/<a>/<a>.md is the text notebook the .ipynb is made from (autograder/authoring.py): it holds
    # the answers, so nbgrader never copies it into a release.
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.md"]
    c.ClearSolutions.code_stub = {"python": CODE_STUB}

    # Grading runs each notebook in a sandboxed kernel and reaches every verdict outside it
    # (autograder/grading.py): nbgrader's Execute step is replaced, the rest is stock.
    c.Autograde.autograde_preprocessors = [
        "autograder.grading.GradingExecute",
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    # nbgrader's default 30 s per cell is too short for training cells on a CPU.
    c.GradingExecute.cell_timeout = int(os.environ.get("AUTOGRADER_CELL_TIMEOUT", "300"))
    c.IgnorePattern.pattern = STDERR_WARNINGS

    # Feedback goes to students: strip the hidden tests from it (their outputs never show the
    # hidden inputs or expected values; see autograder/checks.py).
    c.GenerateFeedback.preprocessors = [
        GetGrades,
        ClearHiddenTests,
        CSSHTMLHeaderPreprocessor,
        "autograder.feedback.OfflineFeedback",
    ]
    # ...and works offline: formulas as MathML instead of MathJax from a CDN, long messages wrapped
    # (autograder/feedback.py; the template is nbgrader's own feedback page without the MathJax loader).
    c.HTMLExporter.template_name = "feedback_offline"
    c.HTMLExporter.extra_template_basedirs = [
        os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates"),
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates"),
    ]

    # `nbgrader export` adds a column saying why a student has no grade (from `python -m autograder grade`'s reports).
    c.ExportApp.plugin_class = "autograder.grade_class.LedgerExport"
    return c
