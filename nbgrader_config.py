"""nbgrader configuration: run every nbgrader command from the repository root.

    nbgrader generate_assignment ch04_scaled_dot_product --force
    nbgrader autograde ch04_scaled_dot_product
    nbgrader generate_feedback ch04_scaled_dot_product
    nbgrader export

Hidden checks read AUTOGRADER_SEED (a secret integer) and AUTOGRADER_DEVICE (cpu or cuda)
from the environment; see autograder/config.py.
"""

import importlib.util
import os

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

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

here = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = here
c.CourseDirectory.course_id = "build-a-transformer"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "gradebook.db")

# solutions/<a>/<a>.md is the text notebook the .ipynb is made from (autograder/authoring.py): it holds
# the answers, so nbgrader never copies it into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.md"]

# Student stubs: what replaces each ### BEGIN SOLUTION ... ### END SOLUTION region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Grading runs each notebook in a sandboxed kernel and reaches every verdict outside it
# (autograder/grading.py): nbgrader's Execute step is replaced, the rest is stock.
# (named by its import path, so that other nbgrader commands do not import torch)
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

# Any stderr output in a test cell scores 0. The checks themselves print warnings to stdout,
# but torch and numpy may still warn on stderr (deprecations, device notices): drop those.
c.IgnorePattern.pattern = r"(?m)^.*\b\w*Warning: |^\s*warnings\.warn\("

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
    os.path.join(os.path.dirname(importlib.util.find_spec("autograder").origin), "templates"),
]

# `nbgrader export` adds a column saying why a student has no grade (from `python -m autograder grade`'s reports).
c.ExportApp.plugin_class = "autograder.grade_class.LedgerExport"
