"""Every exercise of the course, by name. One module per assignment."""

from __future__ import annotations

import importlib
import pkgutil

from ..spec import REGISTERED, Exercise

ASSIGNMENTS = sorted(info.name for info in pkgutil.iter_modules(__path__))


def _collect() -> dict[str, Exercise]:
    """Every exercise, by assignment and then in the order its module declares them (each registers itself)."""
    for assignment in ASSIGNMENTS:
        importlib.import_module(f"{__name__}.{assignment}")
    return {ex.name: ex for assignment in ASSIGNMENTS for ex in REGISTERED.values() if ex.assignment == assignment}


EXERCISES = _collect()


def get(name: str) -> Exercise:
    try:
        return EXERCISES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(EXERCISES))
        raise LookupError(f"There is no exercise named {name!r}; the exercises are: {known}.") from None


def of_assignment(assignment: str) -> list[Exercise]:
    return [ex for ex in EXERCISES.values() if ex.assignment == assignment]
