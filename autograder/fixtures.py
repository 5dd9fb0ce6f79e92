"""Visible-check fixtures: inputs, the reference's outputs and each known mistake's outputs.

Generated from the reference by ``python -m autograder fixtures`` and committed,
so a student's visible checks never need the reference code.
"""
from __future__ import annotations

import functools
import zlib
from pathlib import Path

import torch

from . import serialize
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
        wrong: dict = {}
        for dtype in exercise.dtypes:
            outputs = wrong[dtype_key(dtype)] = {}
            for mistake in exercise.mistakes:
                try:
                    outputs[mistake.key] = exercise.call(mistake.build(ref), case.to(CPU, dtype), CPU, dtype)
                except Exception:  # a wrong version may crash on some inputs; nothing to recognise then
                    continue
        records.append({"case": case.as_data(), "expected": expected, "mistakes": wrong})
    path = path_for(exercise, folder)
    serialize.save(records, path)
    return path


@functools.lru_cache(maxsize=None)
def load(exercise: Exercise) -> list[tuple[Case, object, dict]]:
    path = path_for(exercise)
    records = serialize.load(path)
    return [(Case.from_data(r["case"]), r["expected"], r["mistakes"]) for r in records]
