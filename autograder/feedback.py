"""Feedback that students can open anywhere: no CDN, and messages that wrap.

nbgrader's feedback page loads MathJax from a CDN, so its formulas stay raw TeX on a machine
without internet, and it keeps a long error message on one line. ``nbgrader_config.py`` sets:

- the ``feedback_offline`` template (beside this module): nbgrader's own feedback page, with the
  MathJax loader replaced by nothing;
- ``OfflineFeedback``, after nbconvert's CSS preprocessor: the TeX of every markdown cell becomes
  MathML, which browsers draw themselves, and output text wraps at the page's width.
"""

from __future__ import annotations

import re
from pathlib import Path

from latex2mathml.converter import convert
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Fenced blocks and inline code spans are left alone: a `$` there is code, not math.
CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]+`)", re.S)
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])", re.S)
# A check's message is one long sentence: wrap it instead of scrolling sideways.
WRAP = """div.output_area pre, div.output_subarea pre { white-space: pre-wrap; overflow-wrap: anywhere; }
math[display="block"] { margin: 0.6em 0; }"""


def _mathml(match: re.Match) -> str:
    display, inline = match.groups()
    tex = (display if display is not None else inline).strip()
    try:
        return convert(tex, display="block" if display is not None else "inline")
    except Exception:  # TeX the converter does not know: keep it readable as written
        return match.group(0)


def render_math(markdown: str) -> str:
    """``markdown`` with each ``$...$`` and ``$$...$$`` outside code replaced by MathML."""
    parts = CODE.split(markdown)
    return "".join(part if index % 2 else MATH.sub(_mathml, part) for index, part in enumerate(parts))


class OfflineFeedback(Preprocessor):
    """Formulas as MathML and wrapped output text, so a feedback page needs nothing from the network."""

    enabled = Bool(True)

    def preprocess(self, nb, resources):
        resources.setdefault("inlining", {}).setdefault("css", []).append(WRAP)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = render_math(cell.source)
        return cell, resources
