"""The student's side of a check: run the cases, hand back plain results.

Nothing here decides whether a check passes. ``run_cases`` only calls the
student's code and records what came back (outputs, gradients, a module's
structure, the error it raised, the forbidden built-ins it used), so that the
verdict (``autograder.verdict``) can be reached somewhere the student's code
cannot reach.
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Callable, Optional

import torch
from torch import nn

from .errors import CheckFailure
from .forbidden import display_name, watch
from .spec import Case, Exercise, Result


def _floating_leaves(obj: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)] if obj.is_floating_point() else []
    if isinstance(obj, (tuple, list)):
        return [leaf for i, item in enumerate(obj) for leaf in _floating_leaves(item, f"{prefix}.{i}")]
    if isinstance(obj, dict):
        return [leaf for key, value in obj.items() for leaf in _floating_leaves(value, f"{prefix}.{key}")]
    return []


def _with_grad(obj: Any) -> Any:
    """The same inputs, with every floating tensor a leaf that requires grad (strides kept)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().requires_grad_(True) if obj.is_floating_point() else obj
    if isinstance(obj, tuple):
        return tuple(_with_grad(item) for item in obj)
    if isinstance(obj, list):
        return [_with_grad(item) for item in obj]
    if isinstance(obj, dict):
        return {key: _with_grad(value) for key, value in obj.items()}
    return obj


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
        "modules": {name: {"type": type(m).__name__, "repr": m.extra_repr()} for name, m in model.named_modules() if name},
        "parameters": {name: list(p.shape) for name, p in model.named_parameters()},
    }


def _error_sentence(name: str, error: BaseException, label: str) -> str:
    if isinstance(error, NotImplementedError):
        return (f"`{name}` is not written yet: it still raises NotImplementedError. "
                "Replace `raise NotImplementedError()` with your code.")
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return f"`{name}` raised {type(error).__name__}{': ' + text if text else ''} when called with {label}."


def run_case(exercise: Exercise, impl: Callable, case: Case, device: torch.device,
             dtype: Optional[torch.dtype]) -> Result:
    result = Result()
    with warnings.catch_warnings(record=True) as caught, watch(exercise.forbidden) as used:
        warnings.simplefilter("always")
        try:
            args, kwargs = (_with_grad(case.args), _with_grad(case.kwargs)) if case.grad else (case.args, case.kwargs)
            inputs = _floating_leaves(args, "args") + _floating_leaves(kwargs, "kwargs")
            if exercise.module:
                if case.inspect:
                    result.structure = describe_module(impl(*case.init))
                    return result
                model = exercise.instantiate(impl, case, device, dtype)
                inputs += [(f"params.{n}", p) for n, p in model.named_parameters()]
                result.output = model(*args, **kwargs)
            else:
                result.output = exercise.call(impl, replace(case, args=args, kwargs=kwargs), device, dtype)
            if case.grad:
                result.grads = _gradients(result.output, inputs)
        except CheckFailure as failure:
            result.error = str(failure)
        except Exception as error:  # the student's code failed: say where, not how we got there
            result.error = _error_sentence(exercise.name, error, case.label)
        finally:
            result.forbidden = list(dict.fromkeys(display_name(u) for u in used))  # first used first
            result.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    result.output = _detached(result.output)
    return result


def _detached(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, tuple):
        return tuple(_detached(item) for item in obj)
    if isinstance(obj, list):
        return [_detached(item) for item in obj]
    if isinstance(obj, dict):
        return {key: _detached(value) for key, value in obj.items()}
    return obj


def run_cases(exercise: Exercise, impl: Callable, cases: list[Case], device: torch.device,
              dtype: Optional[torch.dtype]) -> list[Result]:
    """Run every case (already on ``device`` and ``dtype``); never raises for the student's mistakes."""
    return [run_case(exercise, impl, case, device, dtype) for case in cases]

