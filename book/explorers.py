"""Interactive explorers for the chapter pages.

An explorer is a drawing function and a control for each of its arguments::

    def draw_scores(sentence="I saw a saw", temperature=1.0):
        fig, ax = plt.subplots()
        ...                         # draw with matplotlib; return nothing

    explore(draw_scores, sentence=["I saw a saw", "the cat sat"], temperature=(0.1, 5.0, 0.1))

The controls use the abbreviations of ``ipywidgets.interact``: a list gives a drop-down, a
``(min, max, step)`` tuple a slider, a bool a checkbox, and a widget is used as it is. The
function's default arguments are the starting values.

In Jupyter the explorer is live: moving a control redraws the figure. The static book has
no Python kernel behind it, so there it shows the figure drawn with the default values
instead, as an ordinary image with the alt text and caption of its cell. Both come from
one display object that carries the widget and a PNG of its default state; Jupyter shows
the widget, and the book prefers the PNG (``nb_mime_priority_overrides`` in _config.yml).
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import Image, display

__all__ = ["explore"]


class Explorer:
    """A live widget in Jupyter, the figure of its starting values in the static book."""

    def __init__(self, draw: Callable[..., Any], controls: dict[str, Any]):
        drawn: dict[str, Any] = {}

        @functools.wraps(draw)  # the widgets take their starting values from draw's signature
        def redraw(**values):
            try:
                drawn["png"] = figure_png(draw, values)
            except Exception as error:  # ipywidgets would only print it inside the widget
                drawn["error"] = error
                raise
            display(Image(data=drawn["png"]))

        self.widget = widgets.interactive(redraw, **controls)  # draws the starting state once
        for control in self.widget.kwargs_widgets:
            if hasattr(control.style, "description_width"):
                control.style.description_width = "initial"  # show whole names, not "temperat..."
        if "png" not in drawn:
            error = drawn.get("error")
            raise RuntimeError(f"{draw.__name__}() failed with its starting values: {error}") from error
        self.start_png = drawn["png"]

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_()
        bundle["image/png"] = base64.b64encode(self.start_png).decode("ascii")
        return bundle


def figure_png(draw: Callable[..., Any], values: dict[str, Any]) -> bytes:
    """Call ``draw(**values)``, which makes one new matplotlib figure, and return it as PNG bytes."""
    before = set(plt.get_fignums())
    try:
        draw(**values)
        drawn = sorted(set(plt.get_fignums()) - before)
        if len(drawn) != 1:
            raise RuntimeError(f"{draw.__name__}() must draw exactly one new figure; it drew {len(drawn)}.")
        buffer = io.BytesIO()
        plt.figure(drawn[0]).savefig(buffer, format="png", bbox_inches="tight")  # as Jupyter shows it
        return buffer.getvalue()
    finally:  # the figures are shown as PNG only, never again by the notebook's backend
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def explore(draw: Callable[..., Any], **controls: Any) -> Explorer:
    """An explorer of ``draw``: one control per keyword argument (``ipywidgets.interact`` style).

    ``draw`` makes one matplotlib figure and returns nothing. Display the result (leave it
    as the last expression of the cell); give the cell alt text and a caption that describe
    the starting state, as for any figure.
    """
    if not callable(draw):
        raise TypeError(f"explore() needs a drawing function first, not {type(draw).__name__}.")
    if not controls:
        raise TypeError("explore() needs at least one control, for example temperature=(0.1, 5.0, 0.1).")
    return Explorer(draw, controls)
