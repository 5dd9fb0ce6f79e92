"""The student's side of a check: run the cases, hand back plain results.

Nothing here decides whether a check passes. ``run_cases`` only calls the
student's code and records what came back (outputs, gradients, a module's
structure, the error it raised, the forbidden built-ins it used), so that the
verdict (``autograder.verdict``) can be reached somewhere the student's code
cannot reach.
"""

from __future__ import annotations

import inspect
import sysconfig
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten_with_path, tree_map_only

from .compare import sentence
from .errors import CheckFailure
from .forbidden import display_name, watch
from .spec import Case, Exercise, Result


def _floating_leaves(obj: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    """("args.0", tensor), ("kwargs.mask", tensor)...: the floating tensors in ``obj``, named by their path."""
    leaves, _ = tree_flatten_with_path(obj)
    return [
        (".".join([prefix, *(str(_key(entry)) for entry in path)]), leaf)
        for path, leaf in leaves
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
    ]


def _key(entry: Any) -> Any:
    """The index or key of one step of a pytree path."""
    for attribute in ("idx", "key", "name"):
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return entry


def _with_grad(obj: Any) -> Any:
    """The same inputs, with every floating tensor a leaf that requires grad (strides kept)."""
    return tree_map_only(torch.Tensor, lambda t: t.detach().requires_grad_(True) if t.is_floating_point() else t, obj)


def gradient_weights(output: torch.Tensor, index: int) -> torch.Tensor:
    """The fixed weighting whose sum with an output is backpropagated in a ``grad`` case."""
    steps = torch.arange(output.numel(), device=output.device, dtype=torch.float64)
    return torch.cos(0.7 * steps + index).reshape(output.shape).to(output.dtype)


def _gradients(output: Any, inputs: list[tuple[str, torch.Tensor]]) -> dict:
    outputs = [o for _, o in _floating_leaves(output, "out") if o.requires_grad]
    if not outputs:
        return {name: None for name, _ in inputs}
    loss = sum((o * gradient_weights(o, i)).sum() for i, o in enumerate(outputs))
    grads = torch.autograd.grad(loss, [t for _, t in inputs], allow_unused=True)
    return {name: (None if g is None else g.detach()) for (name, _), g in zip(inputs, grads)}


def describe_module(model: Any) -> dict:
    if not isinstance(model, nn.Module):
        return {"type": type(model).__name__}
    return {
        "type": type(model).__name__,
        "modules": {
            name: {"type": type(m).__name__, "repr": m.extra_repr()} for name, m in model.named_modules() if name
        },
        "parameters": {name: list(p.shape) for name, p in model.named_parameters()},
    }


_LIBRARY_FOLDERS = tuple(
    str(Path(folder).resolve())
    for folder in (
        Path(torch.__file__).parent,
        Path(__file__).parent,
        *{sysconfig.get_path(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")},
    )
)


def _is_students(filename: str) -> bool:
    """A frame of the student's own code: a notebook cell, a script, a reference notebook; not torch, not ours,
    not the standard library or an installed package."""
    if filename.startswith("<ipython-input-"):
        return True
    if filename.startswith("<"):  # <frozen ...>, <string>
        return False
    try:
        resolved = str(Path(filename).resolve())
    except (OSError, RuntimeError):
        return False
    return not resolved.startswith(_LIBRARY_FOLDERS)


def _code_of(impl: Any) -> set:
    """The code objects of the student's function, or of the methods their class defines."""
    if inspect.isclass(impl):
        return {
            value.__code__
            for klass in impl.__mro__
            if not klass.__module__.startswith(("torch", "builtins"))
            for value in vars(klass).values()
            if inspect.isfunction(value)
        }
    code = getattr(impl, "__code__", None)
    return {code} if code is not None else set()


def _error_sentence(name: str, impl: Any, error: BaseException, label: str) -> str:
    """One sentence for an exception from the student's code; "not written yet" only for their untouched stub."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if _is_students(frame.filename)]
    if isinstance(error, NotImplementedError) and frames and own and frames[-1] is own[-1]:
        innermost = list(traceback.walk_tb(error.__traceback__))[-1][0].f_code
        stub = getattr(innermost, "co_qualname", innermost.co_name)
        if innermost in _code_of(impl):
            return (
                f"`{name}` is not written yet: it still raises NotImplementedError. "
                "Replace `raise NotImplementedError()` with your code."
            )
        return (
            f"`{name}` calls `{stub}`, which is not written yet: it still raises NotImplementedError. "
            f"Write `{stub}` first."
        )
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    message = f"`{name}` raised {type(error).__name__} when called with {label}" + (
        f": {sentence(text)}" if text else "."
    )
    if own and own[-1].line:
        line = own[-1].line.strip()
        line = line if len(line) <= 120 else line[:117] + "..."
        message += f" In your code, line {own[-1].lineno}: `{line}`."
    return message


def _snapshot(obj: Any) -> Any:
    """A copy of the tensors, lists and dicts of a call's inputs, to see afterwards whether the call changed them."""
    return tree_map_only(torch.Tensor, lambda t: t.detach().clone(), obj)


def _unchanged(before: Any, after: Any) -> bool:
    if isinstance(before, torch.Tensor):
        if not isinstance(after, torch.Tensor) or before.shape != after.shape or before.dtype != after.dtype:
            return False
        after = after.detach()
        if before.is_floating_point() or before.is_complex():
            return bool(((before == after) | (before.isnan() & after.isnan())).all())
        return bool(torch.equal(before, after))
    if isinstance(before, (tuple, list)):
        return (
            isinstance(after, (tuple, list))
            and len(before) == len(after)
            and all(_unchanged(b, a) for b, a in zip(before, after))
        )
    if isinstance(before, dict):
        return (
            isinstance(after, dict)
            and before.keys() == after.keys()
            and all(_unchanged(before[key], after[key]) for key in before)
        )
    if isinstance(before, (str, bytes, int, float, bool, type(None))):
        return type(before) is type(after) and (before == after or before != before)  # NaN stays NaN
    return True  # other objects (a generator, a step function) are the exercise's own, not compared


def _positional_names(target: Callable) -> list[str]:
    """The names of ``target``'s positional parameters (a class: its forward's, without self; a module: its forward's)."""
    function = target.forward if inspect.isclass(target) or isinstance(target, nn.Module) else target
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names[1:] if inspect.isclass(target) else names


def _argument_names(target: Callable, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(name, value) of each argument of the call, named as the student's signature names them."""
    positional = _positional_names(target)
    named = [(positional[i] if i < len(positional) else f"number {i + 1}", value) for i, value in enumerate(args)]
    return named + list(kwargs.items())


def gradient_names(impl: Callable, keys) -> dict:
    """'args.0' -> 'x', 'kwargs.mask' -> 'mask', 'params.W_q.weight' -> 'W_q.weight', from ``impl``'s signature."""
    positional = _positional_names(impl)
    names = {}
    for key in keys:
        kind, _, rest = key.partition(".")
        index = rest.split(".")[0]
        if kind == "args" and index.isdigit() and int(index) < len(positional):
            names[key] = positional[int(index)] + rest[len(index) :]
        else:
            names[key] = rest
    return names


def _changed_input(
    exercise: Exercise, target: Callable, args: tuple, kwargs: dict, before: list, label: str
) -> str | None:
    """The sentence for the first input the call changed in place: no exercise may change its inputs."""
    for (argument, value), kept in zip(_argument_names(target, args, kwargs), before):
        if _unchanged(kept, value):
            continue
        how = (
            "work on new tensors (x = x / n, not x /= n; masked_fill, not masked_fill_)"
            if isinstance(value, torch.Tensor)
            else "work on a copy (sorted(items), not items.sort())"
        )
        return (
            f"`{exercise.name}` changed its argument `{argument}` in place when called with {label}. "
            f"Leave the inputs as they were given: {how}."
        )
    return None


def run_case(exercise: Exercise, impl: Callable, case: Case, device: torch.device, dtype: torch.dtype | None) -> Result:
    result = Result()
    with warnings.catch_warnings(record=True) as caught, watch(exercise.forbidden) as used:
        warnings.simplefilter("always")
        try:
            args, kwargs = (_with_grad(case.args), _with_grad(case.kwargs)) if case.grad else (case.args, case.kwargs)
            inputs = _floating_leaves(args, "args") + _floating_leaves(kwargs, "kwargs")
            before = [_snapshot(value) for value in (*args, *kwargs.values())]
            if case.inspect:
                result.structure = describe_module(impl(*case.init))
                return result
            target = exercise.target(impl, case, device, dtype)
            inputs += [(f"params.{name}", p) for name, p in exercise.calling.parameters(target)]
            result.output = target(*args, **kwargs)
            result.error = _changed_input(exercise, target, args, kwargs, before, case.label)
            if case.grad and not result.error:
                result.grads = _gradients(result.output, inputs)
        except CheckFailure as failure:
            result.error = str(failure)
        except Exception as error:  # the student's code failed: say where, not how we got there
            result.error = _error_sentence(exercise.name, impl, error, case.label)
        finally:
            result.forbidden = list(dict.fromkeys(display_name(u) for u in used))  # first used first
            result.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    result.output = _detached(result.output)
    return result


def _detached(obj: Any) -> Any:
    return tree_map_only(torch.Tensor, torch.Tensor.detach, obj)


def run_cases(
    exercise: Exercise, impl: Callable, cases: list[Case], device: torch.device, dtype: torch.dtype | None
) -> list[Result]:
    """Run every case (already on ``device`` and ``dtype``); never raises for the student's mistakes."""
    return [run_case(exercise, impl, case, device, dtype) for case in cases]
