"""How an exercise is described to the check engine.

An exercise module (``autograder/exercises/<assignment>.py``) creates one
``Exercise`` per graded function or class and attaches to it, with decorators:

- ``@ex.cases``: the inputs, visible (fixed, stored as fixtures) and hidden
  (fresh from the secret seed, including edge cases);
- ``@ex.prop("...")``: properties that must hold whatever the inputs
  (rows sum to 1, gradients flow, masked weights are exactly 0...). A property
  never calls the student's code itself: given a generator it returns the cases
  it needs and a ``judge`` that reads their results, so the verdict can be
  reached in another process than the one that ran the student's code;
- ``@ex.mistake("...")``: the catalogue of known wrong versions. Each is built
  from the reference (so the catalogue never spells out a solution) and its
  message names the mistake in the student's terms.

How the engine calls the exercise is its calling strategy, ``Exercise(..., call=...)``
(``autograder.calling``); the builders of inputs and the helpers that write a
mistake in a line or two are shared by every chapter in ``autograder.cases``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils._pytree import tree_map_only

from .calling import FUNCTION, Function

FLOAT_DTYPES = (torch.float32, torch.float64)


def cast(obj: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """Move the tensors in ``obj`` to ``device``, and its floating tensors to ``dtype`` (None keeps dtypes)."""

    def move(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_floating_point() and dtype is not None:
            return tensor.to(device=device, dtype=dtype)
        return tensor.to(device=device)

    return tree_map_only(torch.Tensor, move, obj)


@dataclass
class Case:
    """One call: ``impl(*args, **kwargs)``, or for a module ``impl(*init)`` loaded with ``state``.

    ``grad``: also backpropagate a fixed weighting of the floating outputs and report the
    gradients of the floating inputs (and of the module's parameters).
    ``inspect``: for a module, only construct it and report its submodules and parameters.
    ``training``: for a module, the mode it runs in (False: after ``model.eval()``, where dropout is off).
    """

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: tuple | None = None
    state: dict | None = None
    grad: bool = False
    inspect: bool = False
    expect_error: bool = False  # a property case that must raise: its error goes to the judge, not the verdict
    training: bool = True

    def to(self, device: torch.device, dtype: torch.dtype | None) -> Case:
        return replace(
            self,
            args=cast(self.args, device, dtype),
            kwargs=cast(self.kwargs, device, dtype),
            state=cast(self.state, device, dtype),
        )

    def as_data(self) -> dict:
        data = {
            "label": self.label,
            "args": self.args,
            "kwargs": self.kwargs,
            "init": self.init,
            "state": self.state,
            "grad": self.grad,
            "inspect": self.inspect,
        }
        if not self.training:  # only when set, so that the fixtures of cases in training mode stay as they are
            data["training"] = False
        return data

    @classmethod
    def from_data(cls, data: dict) -> Case:
        init = tuple(data["init"]) if data["init"] is not None else None
        return cls(
            data["label"],
            tuple(data["args"]),
            dict(data["kwargs"]),
            init,
            data["state"],
            bool(data.get("grad")),
            bool(data.get("inspect")),
            training=bool(data.get("training", True)),
        )


@dataclass
class Result:
    """What running one case produced: plain data only, so it can cross a process boundary."""

    output: Any = None
    grads: dict | None = None  # "args.0", "kwargs.mask", "params.W_q.weight" -> tensor or None
    structure: dict | None = None  # for ``inspect`` cases: {"modules": {...}, "parameters": {...}}
    error: str | None = None  # the sentence that says how the student's code failed
    forbidden: list = field(default_factory=list)  # names of forbidden built-ins it used
    warnings: list = field(default_factory=list)


@dataclass
class Mistake:
    key: str
    message: str  # completes "This looks like a known mistake: ..."
    build: Callable[[Any], Callable]  # reference namespace -> wrong implementation
    expect: str | None = None  # what the failure must say, when not the message (forbidden calls)

    @property
    def expected_text(self) -> str:
        return self.expect or self.message


@dataclass
class Property:
    """``probe(generator) -> (cases, judge)``; ``judge(results, dtype)`` returns None or the failure sentence."""

    description: str
    probe: Callable


class Exercise:
    """One graded function or class: its cases, properties and catalogue of mistakes, and how it is called.

    ``call`` is the calling strategy (``autograder.calling``): ``FUNCTION`` by default, ``MODULE``
    for a student's ``nn.Module``, ``Bound(...)`` or ``Harness(...)`` for the exercises whose
    arguments a stored case cannot hold. Names are unique: ``check(name, ...)`` finds an exercise by it.
    """

    # What a passing check says instead of counting cases and properties, from the results of its run
    # (chapter 12's training check reports the accuracy and the CPU time): results -> phrase.
    summary: Callable[[list], str] | None = None

    def __init__(
        self,
        name: str,
        assignment: str,
        *,
        outputs: tuple = (),
        forbidden: tuple = (),
        why_forbidden: str = "",
        call: Function = FUNCTION,
        dtypes: tuple = FLOAT_DTYPES,
        dtype_hint: str = "",
        infinities: str = "",
        points: tuple[int, int] | None = None,
        difficulty: int | None = None,
        minutes: int | None = None,
        task: str = "",
    ):
        if name in REGISTERED:
            raise ValueError(
                f"Two exercises are named {name!r} (in {REGISTERED[name].assignment} and in {assignment}): "
                "give this one another name, since check(name, ...) finds an exercise by its name."
            )
        _check_declaration(name, points, difficulty, minutes, task)
        self.name = name
        self.assignment = assignment
        self.outputs = outputs  # names of the items of a returned tuple, () for a single value
        self.forbidden = forbidden
        self.why_forbidden = why_forbidden
        self.calling = call
        self.dtypes = dtypes  # (None,) when the inputs have no floating dtype to follow
        # Said after a wrong dtype, when "keep the dtype of the inputs" does not fit (no floating inputs,
        # or the point is to change the dtype): which dtype is expected, and how to get it.
        self.dtype_hint = dtype_hint
        # What an infinite entry means in the outputs (e.g. "-inf marks a filtered-out logit: ..."),
        # said when -inf is expected and a number came, or the other way round.
        self.infinities = infinities
        # What the tables and the test cells say (autograder/authoring.py): the points of the visible and the
        # hidden checks, the difficulty from 1 (a few lines) to 5 (a project), the minutes a student needs, and
        # what the student writes, in one line.
        self.points = points
        self.difficulty = difficulty
        self.minutes = minutes
        self.task = task
        self.properties: list[Property] = []
        self.mistakes: list[Mistake] = []
        self._cases: Callable | None = None
        REGISTERED[name] = self

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"

    @property
    def module(self) -> bool:
        """Whether the student writes a class (an ``nn.Module``), built from each case's ``init``."""
        return self.calling.kind == "class"

    # --- decorators used by the exercise modules -------------------------------------
    def cases(self, make: Callable[[torch.Generator, bool], list]) -> Callable:
        self._cases = make
        return make

    def prop(self, description: str, probe: Callable | None = None) -> Callable:
        """Add a property: as the decorator of its probe, or given the ``probe`` at once, for the properties a
        helper of ``autograder.cases`` writes in one line
        (``ex.prop("gradients flow back to x", lambda g: gradients_flow(case(g), {"args.0": "x"}))``)."""

        def register(probe: Callable) -> Callable:
            self.properties.append(Property(description, probe))
            return probe

        return register if probe is None else register(probe)

    def mistake(self, message: str, expect: str | None = None) -> Callable:
        def register(build: Callable) -> Callable:
            self.mistakes.append(Mistake(build.__name__, message, build, expect))
            return build

        return register

    # --- used by the engine -----------------------------------------------------------
    def make_cases(self, generator: torch.Generator, hidden: bool) -> list[Case]:
        return list(self._cases(generator, hidden))

    def target(self, impl: Callable, case: Case, device: torch.device, dtype: torch.dtype | None) -> Callable:
        """What the engine calls with the case's arguments, by the exercise's calling strategy."""
        return self.calling.prepare(self.name, impl, case, device, dtype)

    def call(self, impl: Callable, case: Case, device: torch.device, dtype: torch.dtype | None) -> Any:
        """Run one case's forward computation (used for the reference and the catalogue of mistakes)."""
        return self.target(impl, case, device, dtype)(*case.args, **case.kwargs)


def _check_declaration(name: str, points, difficulty, minutes, task) -> None:
    """One sentence on a declared number or text that cannot be right (None: not declared)."""

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if points is not None and not (
        isinstance(points, tuple) and len(points) == 2 and all(whole(p) and p >= 0 for p in points) and sum(points)
    ):
        raise ValueError(
            f"Exercise {name!r}: points should be (visible, hidden), two whole numbers of at least 0 and not both 0, "
            f"not {points!r}."
        )
    if difficulty is not None and not (whole(difficulty) and 1 <= difficulty <= 5):
        raise ValueError(f"Exercise {name!r}: difficulty should be a whole number from 1 to 5, not {difficulty!r}.")
    if minutes is not None and not (whole(minutes) and minutes > 0):
        raise ValueError(f"Exercise {name!r}: minutes should be a whole number above 0, not {minutes!r}.")
    if not isinstance(task, str) or "\n" in task or "|" in task:
        raise ValueError(
            f"Exercise {name!r}: task should be one line of text without '|' (a table cell), not {task!r}."
        )


# Every exercise created, by name (``autograder.exercises`` collects them by assignment).
REGISTERED: dict[str, Exercise] = {}
