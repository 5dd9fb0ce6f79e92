"""``check`` (visible layer) and ``check_hidden`` (hidden layer): one call per test cell."""
from __future__ import annotations

import time
import warnings
import zlib
from typing import Any, Callable, Optional

import torch

from . import config, fixtures, reference
from .compare import compare, describe, same
from .errors import CheckFailure, ForbiddenCall
from .exercises import get
from .forbidden import display_name, watch
from .spec import Case, Exercise, cast


class Context:
    """What a property test needs: device, dtype, fresh random inputs and a safe way to call the student."""

    def __init__(self, exercise: Exercise, device: torch.device, dtype: Optional[torch.dtype],
                 generator: torch.Generator, hidden: bool):
        self.exercise = exercise
        self.device = device
        self.dtype = dtype
        self.generator = generator
        self.hidden = hidden
        self.warnings: list[str] = []

    def randn(self, *shape: int, scale: float = 1.0, requires_grad: bool = False) -> torch.Tensor:
        x = torch.randn(*shape, generator=self.generator, dtype=torch.float64) * scale
        x = x.to(device=self.device, dtype=self.dtype or torch.float32)
        return x.requires_grad_(requires_grad)

    def fail(self, message: str) -> None:
        raise CheckFailure(message)

    def run(self, impl: Callable, case: Case) -> Any:
        """Call the student's code on a case already on this context's device and dtype."""
        return self.guarded(lambda: self.exercise.call(impl, case, self.device, self.dtype), case.label)

    def construct(self, impl: Callable, *init) -> Any:
        """Instantiate the student's module class with ``init``."""
        return self.guarded(lambda: impl(*init), f"{self.exercise.name}{init}")

    def guarded(self, call: Callable[[], Any], label: str) -> Any:
        """Run ``call`` watching for forbidden built-ins; a crash becomes one sentence naming ``label``."""
        name = self.exercise.name
        with warnings.catch_warnings(record=True) as caught, watch(self.exercise.forbidden) as used:
            warnings.simplefilter("always")
            try:
                result = call()
            except CheckFailure:
                raise
            except NotImplementedError:
                raise CheckFailure(f"`{name}` is not written yet: it still raises NotImplementedError. "
                                   "Replace `raise NotImplementedError()` with your code.") from None
            except Exception as error:  # the student's code crashed: say where, not how we got there
                text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
                raise CheckFailure(f"`{name}` raised {type(error).__name__}"
                                   f"{': ' + text if text else ''} when called with {label}.") from None
        self.warnings += [f"{w.category.__name__}: {w.message}" for w in caught]
        if used:
            raise ForbiddenCall(f"`{name}` uses {display_name(used[0])}, which this exercise asks you not to use"
                                f"{': ' + self.exercise.why_forbidden if self.exercise.why_forbidden else ''}.")
        return result


def _check_output(exercise: Exercise, got: Any, expected: Any, show_values: bool) -> Optional[str]:
    if exercise.outputs:
        names = ", ".join(exercise.outputs)
        if not isinstance(got, (tuple, list)) or len(got) != len(exercise.outputs):
            return f"`{exercise.name}` should return a tuple ({names}), but it returned {describe(got)}."
        for name, g, e in zip(exercise.outputs, got, expected):
            message = compare(g, e, f"`{name}`", show_values)
            if message:
                return message
        return None
    if got is None and expected is not None:
        return f"`{exercise.name}` returned None: did you forget the `return` statement?"
    return compare(got, expected, f"what `{exercise.name}` returns", show_values)


def _diagnose(exercise: Exercise, got: Any, expected: Any, wrong_outputs: dict, dtype) -> str:
    for mistake in exercise.mistakes:
        wrong = wrong_outputs.get(mistake.key)
        if wrong is not None and not same(wrong, expected, dtype) and same(got, wrong, dtype):
            return f" This looks like a known mistake: {mistake.message}"
    return ""


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else ""


def _report(exercise: Exercise, layer: str, cases: int, contexts: list[Context], started: float) -> None:
    notes = sorted({w for ctx in contexts for w in ctx.warnings})
    dtypes = "/".join(_dtype_name(ctx.dtype) for ctx in contexts if ctx.dtype is not None)
    where = f"{contexts[0].device.type}{', ' + dtypes if dtypes else ''}"
    print(f"\u2714 {exercise.name}: {layer} checks passed ({cases} cases, {len(exercise.properties)} properties, "
          f"{where}, {time.perf_counter() - started:.2f} s).")
    for note in notes[:3]:
        print(f"  Note: your code raised a warning: {note}")


def _validate(name: str, impl: Any) -> Exercise:
    exercise = get(name) if isinstance(name, str) else None
    if exercise is None:
        raise CheckFailure(f"check() needs the exercise name as a string, got {describe(name)}.")
    if impl is None or not callable(impl):
        kind = "class" if exercise.module else "function"
        raise CheckFailure(f"check('{name}', ...) expected your {kind} `{name}`, but got {describe(impl)}. "
                           f"Run the cell that defines `{name}` first.")
    return exercise


def _guarded(run: Callable) -> Callable:
    """Turn an unexpected failure inside the engine into one sentence instead of a traceback."""
    def wrapper(name, impl, **kwargs):
        try:
            return run(name, impl, **kwargs)
        except CheckFailure:
            raise
        except LookupError as error:
            raise CheckFailure(str(error).strip("'\"")) from None
        except Exception as error:
            raise CheckFailure(f"The check for {name!r} itself failed ({type(error).__name__}: {error}). "
                               "This is a problem in the course, not in your code: please report it.") from None
    wrapper.__name__, wrapper.__doc__ = run.__name__, run.__doc__
    return wrapper


@_guarded
def check(name: str, impl: Callable, *, device: Optional[torch.device] = None, dtypes: Optional[tuple] = None) -> None:
    """The visible checks of exercise ``name`` on your ``impl``: properties and stored expected outputs.

    Raises CheckFailure with a message that says what is wrong; prints one line when all pass.
    """
    started = time.perf_counter()
    exercise = _validate(name, impl)
    device = torch.device(device) if device is not None else config.device()
    records = fixtures.load(exercise)
    contexts = []
    for dtype in dtypes or exercise.dtypes:
        generator = torch.Generator().manual_seed(fixtures.visible_seed(exercise) + 1)
        ctx = Context(exercise, device, dtype, generator, hidden=False)
        contexts.append(ctx)
        for case, expected, wrong_outputs in records:
            case = case.to(device, dtype)
            got = ctx.run(impl, case)
            expected = cast(expected, device, dtype)
            message = _check_output(exercise, got, expected, show_values=True)
            if message:
                hint = _diagnose(exercise, got, expected, wrong_outputs[fixtures.dtype_key(dtype)], dtype)
                raise CheckFailure(f"With {case.label} ({_dtype_name(dtype) or 'as given'}): {message}{hint}")
        for prop in exercise.properties:
            prop.test(impl, ctx)
    _report(exercise, "visible", len(records), contexts, started)


@_guarded
def check_hidden(name: str, impl: Callable, *, device: Optional[torch.device] = None,
                 dtypes: Optional[tuple] = None, seed: Optional[int] = None) -> None:
    """The hidden checks: the reference on fresh inputs from the instructor's secret seed, and edge cases.

    Messages never show the hidden inputs' values or the expected values.
    """
    started = time.perf_counter()
    exercise = _validate(name, impl)
    device = torch.device(device) if device is not None else config.device()
    ref = reference.load(exercise.assignment)
    ref_impl = getattr(ref, exercise.name)
    seed = config.secret_seed() if seed is None else seed
    contexts, count = [], 0
    for dtype in dtypes or exercise.dtypes:
        generator = torch.Generator().manual_seed(seed ^ zlib.crc32(f"{exercise.name}/{dtype}".encode()))
        ctx = Context(exercise, device, dtype, generator, hidden=True)
        contexts.append(ctx)
        cases = exercise.make_cases(generator, hidden=True)
        count = len(cases)
        for case in cases:
            expected = exercise.call(ref_impl, case.to(device, torch.float64 if dtype else None), device,
                                     torch.float64 if dtype else None)
            expected = cast(expected, device, dtype)
            case = case.to(device, dtype)
            got = ctx.run(impl, case)
            message = _check_output(exercise, got, expected, show_values=False)
            if message:
                wrong_outputs = {}
                for mistake in exercise.mistakes:
                    try:
                        wrong_outputs[mistake.key] = cast(exercise.call(mistake.build(ref), case, device, dtype), device, dtype)
                    except Exception:
                        continue
                hint = _diagnose(exercise, got, expected, wrong_outputs, dtype)
                raise CheckFailure(f"On a hidden test ({case.label}, {_dtype_name(dtype) or 'as given'}): {message}{hint}")
        for prop in exercise.properties:
            prop.test(impl, ctx)
    _report(exercise, "hidden", count, contexts, started)
