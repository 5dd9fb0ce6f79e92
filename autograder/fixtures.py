"""Visible-check fixtures: inputs, the reference's outputs and each known mistake's outputs.

Generated from the reference by ``python -m autograder fixtures`` and committed,
so a student's visible checks never need the reference code.
"""

from __future__ import annotations

import copy
import functools
import zlib
from pathlib import Path

import torch

from . import serialize
from .runner import gradient_names, run_case
from .spec import Case, Exercise

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
CPU = torch.device("cpu")


def path_for(exercise: Exercise, folder: Path = FIXTURE_DIR) -> Path:
    return folder / exercise.assignment / f"{exercise.name}.safetensors"


def visible_seed(exercise: Exercise) -> int:
    return zlib.crc32(exercise.name.encode())


def dtype_key(dtype) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else "as_given"


def generate(exercise: Exercise, folder: Path = FIXTURE_DIR) -> Path:
    """Store each visible case with the reference's output (in float64) and, per dtype the
    checks run in, the output of every known mistake (overflow and rounding depend on the dtype)."""
    from . import reference  # the instructor's: the student kit has the fixtures, not the means to remake them

    ref = reference.load(exercise.assignment)
    generator = torch.Generator().manual_seed(visible_seed(exercise))
    exact = torch.float64 if exercise.dtypes != (None,) else None
    records = []
    for case in exercise.make_cases(generator, hidden=False):
        expected = exercise.call(getattr(ref, exercise.name), case, CPU, exact)
        grads = reference_gradients(exercise, getattr(ref, exercise.name), case, CPU, exact)
        wrong: dict = {}
        for dtype in exercise.dtypes:
            outputs = wrong[dtype_key(dtype)] = {}
            for mistake in exercise.mistakes:
                try:
                    outputs[mistake.key] = exercise.call(mistake.build(ref), case.to(CPU, dtype), CPU, dtype)
                except Exception:  # a wrong version may crash on some inputs; nothing to recognise then
                    continue
        record = {"case": case.as_data(), "expected": expected, "mistakes": wrong}
        if grads is not None:
            record["grads"] = grads
        records.append(record)
    path = path_for(exercise, folder)
    serialize.save(records, path)
    return path


def reference_gradients(exercise: Exercise, impl, case: Case, device: torch.device, dtype) -> dict | None:
    """For a ``grad`` case: the reference's gradients ("args.0" -> tensor) and their names ("args.0" -> "x")."""
    if not case.grad:
        return None
    result = run_case(exercise, impl, case.to(device, dtype), device, dtype)
    if result.error or result.grads is None:
        raise RuntimeError(f"the reference of {exercise.name} failed on {case.label}: {result.error}")
    return {"values": result.grads, "names": gradient_names(impl, result.grads)}


@functools.cache
def _records(exercise: Exercise) -> list[dict]:
    return serialize.load(path_for(exercise))


def load(exercise: Exercise) -> list[tuple[Case, object, dict, dict | None]]:
    """The visible cases with their expected outputs. Each call gets its own copy of the cases' inputs, so that
    code which changes its inputs in place cannot change the cases of a later check in the same kernel."""
    return [
        (Case.from_data(copy.deepcopy(r["case"])), r["expected"], r["mistakes"], r.get("grads"))
        for r in _records(exercise)
    ]
