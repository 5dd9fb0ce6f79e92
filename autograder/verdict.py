"""The grader's side of a check: read the plain results of the student's run and decide.

Nothing here calls the student's code. Comparison cases are judged against the
expected output (stored fixtures for the visible layer, the reference for the
hidden layer); a mismatch is matched against the catalogue of known mistakes so
the message can name it; each property's ``judge`` reads its own cases' results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from .compare import Hints, compare, describe, same
from .spec import Case, Exercise, Result


@dataclass
class Comparison:
    """A case whose output must equal ``expected``; ``wrong_outputs`` gives each known mistake's output."""

    case: Case
    expected: Any
    wrong_outputs: Callable[[], dict]
    grads: dict | None = None  # for a ``grad`` case: the reference's {"values": {...}, "names": {...}}


@dataclass
class PropertyRun:
    description: str
    cases: list[Case]
    judge: Callable[[list[Result], torch.dtype | None], str | None]


@dataclass
class Plan:
    """Everything one layer asks of the student's code in one dtype, in the order it is judged."""

    dtype: torch.dtype | None
    comparisons: list[Comparison] = field(default_factory=list)
    properties: list[PropertyRun] = field(default_factory=list)

    def cases(self) -> list[Case]:
        return [c.case for c in self.comparisons] + [case for p in self.properties for case in p.cases]


def dtype_name(dtype: torch.dtype | None) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else "as given"


def hints_for(exercise: Exercise, case: Case | None) -> Hints:
    """The exercise's own words on dtypes and infinities; "keep the dtype of the inputs" only when it has some."""
    inputs = tree_leaves((case.args, case.kwargs, case.state)) if case is not None else []
    floating = any(isinstance(leaf, torch.Tensor) and leaf.is_floating_point() for leaf in inputs)
    return Hints(dtype=exercise.dtype_hint, infinity=exercise.infinities, floating_inputs=floating)


def check_output(
    exercise: Exercise, got: Any, expected: Any, show_values: bool, case: Case | None = None
) -> str | None:
    hints = hints_for(exercise, case)
    if exercise.outputs:
        names = ", ".join(exercise.outputs)
        if not isinstance(got, (tuple, list)) or len(got) != len(exercise.outputs):
            return f"`{exercise.name}` should return a tuple ({names}), but it returned {describe(got)}."
        for name, g, e in zip(exercise.outputs, got, expected):
            message = compare(g, e, f"`{name}`", show_values, hints)
            if message:
                return message
        return None
    if got is None and expected is not None:
        return f"`{exercise.name}` returned None: did you forget the `return` statement?"
    return compare(got, expected, f"what `{exercise.name}` returns", show_values, hints)


def check_gradients(exercise: Exercise, got: dict | None, expected: dict, show_values: bool) -> str | None:
    """The gradients of a fixed weighting of every returned tensor must be the reference's: a returned tensor
    cut from the computation (a .detach(), a state detached at every step) changes them."""
    got = got or {}
    cut = (
        "Keep every returned tensor connected to the computation: no .detach(), .item(), numpy or "
        "torch.tensor(...) on the way, inside a loop included."
    )
    for key, wanted in expected["values"].items():
        if wanted is None:
            continue
        name = expected["names"].get(key, key)
        grad = got.get(key)
        if grad is None:
            return f"No gradient reaches `{name}` from what `{exercise.name}` returns. {cut}"
        message = compare(grad, wanted, f"the gradient that reaches `{name}`", show_values)
        if message:
            return f"{message} Your outputs are right, so some path from `{name}` to them is cut or changed. {cut}"
    return None


def diagnose(exercise: Exercise, got: Any, expected: Any, wrong_outputs: dict, dtype) -> str:
    for mistake in exercise.mistakes:
        wrong = wrong_outputs.get(mistake.key)
        if wrong is not None and not same(wrong, expected, dtype) and same(got, wrong, dtype):
            return f" This looks like a known mistake: {mistake.message}"
    return ""


def decide(exercise: Exercise, plan: Plan, results: list[Result], hidden: bool) -> str | None:
    """None when every case and property passes, else the one sentence the student sees."""
    forbidden = list(dict.fromkeys(name for r in results for name in r.forbidden))
    if forbidden:
        why = f": {exercise.why_forbidden}" if exercise.why_forbidden else ""
        return f"`{exercise.name}` uses {forbidden[0]}, which this exercise asks you not to use{why}."
    where = "On a hidden test ({label}, {dtype}): " if hidden else "With {label} ({dtype}): "
    position = 0
    for comparison in plan.comparisons:
        result = results[position]
        position += 1
        if result.error:
            return result.error
        message = check_output(exercise, result.output, comparison.expected, not hidden, comparison.case)
        if message:
            hint = diagnose(exercise, result.output, comparison.expected, comparison.wrong_outputs(), plan.dtype)
            return where.format(label=comparison.case.label, dtype=dtype_name(plan.dtype)) + message + hint
        if comparison.grads is not None:
            message = check_gradients(exercise, result.grads, comparison.grads, show_values=not hidden)
            if message:
                return where.format(label=comparison.case.label, dtype=dtype_name(plan.dtype)) + message
    for prop in plan.properties:
        own = results[position : position + len(prop.cases)]
        position += len(prop.cases)
        errors = [r.error for r, case in zip(own, prop.cases) if r.error and not case.expect_error]
        if errors:
            return errors[0]
        message = prop.judge(own, plan.dtype)
        if message:
            return message
    return None
