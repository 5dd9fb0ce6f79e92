"""Every exercise of the course, by name. One module per assignment."""
from __future__ import annotations

import importlib
import pkgutil

from ..spec import Exercise

ASSIGNMENTS = sorted(info.name for info in pkgutil.iter_modules(__path__))


def _collect() -> dict[str, Exercise]:
    found = {}
    for assignment in ASSIGNMENTS:
        module = importlib.import_module(f"{__name__}.{assignment}")
        for value in vars(module).values():
            if isinstance(value, Exercise):
                found[value.name] = value
    return found


EXERCISES = _collect()


def get(name: str) -> Exercise:
    try:
        return EXERCISES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(EXERCISES))
        raise LookupError(f"There is no exercise named {name!r}; the exercises are: {known}.") from None


def of_assignment(assignment: str) -> list[Exercise]:
    return [ex for ex in EXERCISES.values() if ex.assignment == assignment]
