"""``check`` (visible layer) and ``check_hidden`` (hidden layer): one call per test cell.

Each builds a plan of cases, runs them through ``runner`` (the student's side) and
hands the plain results to ``verdict`` (the grader's side). Here both sides share a
process, which is all a student's own notebook needs. At grading (``autograder.protocol``),
they only run the cases the grader prepared and hand back the results: the grader decides.
"""

from __future__ import annotations

import importlib.util
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._pytree import tree_leaves

from . import config, fixtures, protocol
from .compare import describe, plural
from .errors import CheckFailure
from .exercises import get
from .runner import run_cases
from .spec import Case, Exercise, Result, cast
from .verdict import Comparison, Plan, PropertyRun, decide, dtype_name


def _properties(exercise: Exercise, generator: torch.Generator, device, dtype) -> list[PropertyRun]:
    runs = []
    for prop in exercise.properties:
        cases, judge = prop.probe(generator)
        runs.append(PropertyRun(prop.description, [c.to(device, dtype) for c in cases], judge))
    return runs


def _output_device(case: Case, device: torch.device) -> torch.device:
    """Where a case's outputs belong: on its inputs' device, or on the CPU when no input is a tensor
    (``encode(text, vocab)``, ``sinusoidal_positional_encoding(max_len, d_model)``)."""
    holds_tensor = any(isinstance(leaf, torch.Tensor) for leaf in tree_leaves((case.args, case.kwargs, case.state)))
    return device if holds_tensor else torch.device("cpu")


def visible_plan(exercise: Exercise, device: torch.device, dtype: torch.dtype | None) -> Plan:
    plan = Plan(dtype)
    for case, expected, wrong, grads in fixtures.load(exercise):
        wrong_here, out = wrong[fixtures.dtype_key(dtype)], _output_device(case, device)
        plan.comparisons.append(
            Comparison(
                case.to(device, dtype),
                cast(expected, out, dtype),
                lambda w=wrong_here, out=out: cast(w, out, dtype),
                cast(grads, device, dtype),
            )
        )
    generator = torch.Generator().manual_seed(fixtures.visible_seed(exercise) + 1)
    plan.properties = _properties(exercise, generator, device, dtype)
    return plan


def hidden_plan(exercise: Exercise, device: torch.device, dtype: torch.dtype | None, seed: int) -> Plan:
    """Fresh inputs from the secret seed; expected outputs from the reference, computed in float64."""
    from . import reference  # the instructor's: the student kit ships without it

    ref = reference.load(exercise.assignment)
    exact = torch.float64 if dtype is not None else None
    generator = torch.Generator().manual_seed(seed ^ zlib.crc32(f"{exercise.name}/{dtype}".encode()))
    plan = Plan(dtype)
    for case in exercise.make_cases(generator, hidden=True):
        expected = cast(
            exercise.call(getattr(ref, exercise.name), case.to(device, exact), device, exact),
            _output_device(case, device),
            dtype,
        )
        grads = cast(
            fixtures.reference_gradients(exercise, getattr(ref, exercise.name), case, device, exact), device, dtype
        )
        case = case.to(device, dtype)

        def wrong_outputs(case=case) -> dict:
            outputs = {}
            for mistake in exercise.mistakes:
                try:
                    outputs[mistake.key] = exercise.call(mistake.build(ref), case, device, dtype)
                except Exception:  # a wrong version may crash on some inputs: nothing to recognise
                    continue
            return outputs

        plan.comparisons.append(Comparison(case, expected, wrong_outputs, grads))
    plan.properties = _properties(exercise, generator, device, dtype)
    return plan


def _validate(name: str, impl) -> Exercise:
    if not isinstance(name, str):
        raise CheckFailure(f"check() needs the exercise name as a string, got {describe(name)}.")
    exercise = get(name)
    if impl is None or not callable(impl):
        kind = exercise.calling.kind
        raise CheckFailure(
            f"check('{name}', ...) expected your {kind} `{name}`, but got {describe(impl)}. "
            f"Run the cell that defines `{name}` first."
        )
    return exercise


def _submit(exchange: Path, layer: str, name: str, impl) -> None:
    """Grading mode: run the cases the grader prepared and hand back plain results; the grader decides."""
    exercise = _validate(name, impl)
    handed = []
    for dtype, device, cases in protocol.read_cases(exchange, name, layer):
        results = run_cases(exercise, impl, cases, device, getattr(torch, dtype) if dtype else None)
        handed.append((dtype, [protocol.result_as_data(exercise, r) for r in results]))
    protocol.write_results(exchange, name, layer, handed)
    print(f"{name}: the {layer} checks ran; the grader decides the score.")


def _run(
    layer: str, name: str, impl, device, dtypes, make_plan: Callable[[Exercise, torch.device, torch.dtype | None], Plan]
) -> None:
    exchange = protocol.active()
    if exchange is not None:
        return _submit(exchange, layer, name, impl)
    started = time.perf_counter()
    try:
        exercise = _validate(name, impl)
        device = torch.device(device) if device is not None else config.device()
        all_results: list[Result] = []
        plans = []
        for dtype in dtypes or exercise.dtypes:
            plan = make_plan(exercise, device, dtype)
            results = run_cases(exercise, impl, plan.cases(), device, dtype)
            all_results += results
            plans.append(plan)
            message = decide(exercise, plan, results, hidden=(layer == "hidden"))
            if message:
                raise CheckFailure(message)
    except CheckFailure:
        raise
    except LookupError as error:
        raise CheckFailure(str(error).strip("'\"")) from None
    except Exception as error:
        raise CheckFailure(
            f"The check for {name!r} itself failed ({type(error).__name__}: {error}). "
            "This is a problem in the course, not in your code: please report it."
        ) from None
    dtypes_text = "/".join(dtype_name(p.dtype) for p in plans if p.dtype is not None)
    if exercise.summary is not None:
        print(f"\u2714 {exercise.name}: {layer} checks passed ({exercise.summary(all_results)}).")
    else:
        print(
            f"\u2714 {exercise.name}: {layer} checks passed ({plural(len(plans[0].comparisons), 'case')}, "
            f"{plural(len(exercise.properties), 'property')}, {device.type}{', ' + dtypes_text if dtypes_text else ''}, "
            f"{time.perf_counter() - started:.2f} s)."
        )
    for note in sorted({w for r in all_results for w in r.warnings})[:3]:
        print(f"  Note: your code raised a warning: {note}")


def check(name: str, impl: Callable, *, device: torch.device | None = None, dtypes: tuple | None = None) -> None:
    """The visible checks of exercise ``name`` on your ``impl``: stored expected outputs and properties.

    Raises CheckFailure with a sentence that says what is wrong; prints one line when all pass.
    """
    _run("visible", name, impl, device, dtypes, visible_plan)


def check_hidden(
    name: str,
    impl: Callable,
    *,
    device: torch.device | None = None,
    dtypes: tuple | None = None,
    seed: int | None = None,
) -> None:
    """The hidden checks: the reference on fresh inputs from the instructor's secret seed, and edge cases.

    Messages never show the hidden inputs' values or the expected values. The student kit has no
    reference, so there it only says where the hidden checks run.
    """
    if protocol.active() is None and importlib.util.find_spec(f"{__package__}.reference") is None:
        print(
            f"The hidden checks of {name!r} run only when your notebook is graded; "
            f"check({name!r}, ...) runs the visible ones now."
        )
        return
    seed = config.secret_seed() if seed is None else seed
    _run("hidden", name, impl, device, dtypes, lambda ex, dev, dt: hidden_plan(ex, dev, dt, seed))
