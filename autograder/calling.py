"""How the engine calls an exercise: one strategy per kind of exercise, chosen on its declaration.

A case is plain data (it is stored as a fixture), so it cannot hold a module with weights, a
step function or a random generator. The strategy turns the student's code and one case into
the thing the engine calls with the case's ``args`` and ``kwargs``:

- ``FUNCTION``: the function itself (most exercises);
- ``Module()``: the student's class, built from ``case.init``, moved to the run's device and
  dtype, put in the case's mode and loaded with the case's weights (``case.state``); ``wrap``
  puts an adapter module around it (a sublayer given as a matrix, a choice of method);
- ``Bound(bind)``: a function whose real arguments are built from the case's data at call time
  (``bind(impl, device, *args, **kwargs)``: a step table becomes a step function, a seed a generator);
- ``Harness(harness)``: a module of the checks' own (``harness(impl, *case.init)``) that drives
  the student's code (a sequence of calls, a measurement) and returns plain tensors and numbers.

The runner (the student's code), the reference and the catalogue of mistakes all call through
the same strategy, so they are called alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import CheckFailure


def on(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """``model`` on the run's device, and in its dtype unless the run keeps dtypes (None)."""
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)


class Function:
    """Call the student's function with the case's arguments."""

    kind = "function"  # what the student writes, as the messages name it

    def prepare(self, name: str, impl: Callable, case, device: torch.device, dtype: torch.dtype | None) -> Callable:
        """What to call with ``*case.args, **case.kwargs``."""
        return impl

    def parameters(self, target: Callable) -> list[tuple[str, torch.Tensor]]:
        """The parameters of ``target`` whose gradients a ``grad`` case reports."""
        return []


FUNCTION = Function()


class Module(Function):
    """Build the student's ``nn.Module`` from ``case.init`` and call it."""

    kind = "class"

    def __init__(self, wrap: Callable[[nn.Module], nn.Module] | None = None):
        self.wrap = wrap  # model -> the module the engine calls (an adapter around the student's)

    def prepare(self, name, impl, case, device, dtype):
        model = impl(*case.init)
        if not isinstance(model, nn.Module):
            raise CheckFailure(f"`{name}(...)` should create a torch.nn.Module, but it made {type(model).__name__}.")
        model = on(model, device, dtype)
        model.train(case.training)
        if case.state is not None:
            load_weights(model, case.state, name)
        return self.wrap(model) if self.wrap is not None else model

    def parameters(self, target):
        return list(target.named_parameters())


MODULE = Module()


class Bound(Function):
    """Call ``bind(impl, device, *case.args, **case.kwargs)``, which builds the real arguments and calls ``impl``."""

    def __init__(self, bind: Callable[..., Any]):
        self.bind = bind

    def prepare(self, name, impl, case, device, dtype):
        def bound(*args, **kwargs):
            return self.bind(impl, device, *args, **kwargs)

        return bound


class Harness(Module):
    """Build the checks' module ``harness(impl, *case.init)`` around the student's code and call it.

    ``weights_of`` names the harness's submodule that receives the case's ``state``; ``kind`` is
    what the student writes ("class" for a class the harness instantiates).
    """

    def __init__(self, harness: Callable[..., nn.Module], *, weights_of: str = "", kind: str = "function"):
        super().__init__()
        self.harness, self.weights_of, self.kind = harness, weights_of, kind

    def prepare(self, name, impl, case, device, dtype):
        model = on(self.harness(impl, *(case.init or ())), device, dtype)
        if case.state is not None:
            receiver = model.get_submodule(self.weights_of)
            load_weights(receiver, case.state, type(receiver).__name__)
        return model


def _not_a_parameter(model: nn.Module, key: str, shape: tuple, name: str) -> str | None:
    """What is wrong with the attribute ``key`` of ``model`` when it is there but is no parameter, else None."""
    path, _, leaf = key.rpartition(".")
    try:
        owner = model.get_submodule(path)
    except AttributeError:
        return None
    missing = object()
    value, where = getattr(owner, leaf, missing), f"`{name}.{key}`"
    if value is missing:
        return None
    if isinstance(value, torch.Tensor):
        if leaf in owner._buffers:
            return (
                f"{where} is a buffer (register_buffer), not an nn.Parameter, so it is never trained: "
                "make it an nn.Parameter(...)."
            )
        if value.grad_fn is not None:
            return (
                f"{where} is a tensor computed from an nn.Parameter (such as nn.Parameter(t) * 0.02), so it is "
                "not a parameter itself: do the arithmetic inside, nn.Parameter(t * 0.02)."
            )
        return (
            f"{where} is a plain tensor, not an nn.Parameter, so the optimiser never sees it: "
            "wrap it, self." + leaf + " = nn.Parameter(...)."
        )
    if value is None:
        if isinstance(owner, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d)) and leaf in ("weight", "bias"):
            return (
                f"{where} is None: this norm layer was made without its learned scale and shift "
                "(elementwise_affine=False or affine=False). Keep the default, which learns them."
            )
        if isinstance(owner, nn.Linear) and leaf == "bias":
            return f"{where} is None: this layer needs a bias, so leave out bias=False."
        return f"{where} is None, but it should be an nn.Parameter of shape {shape}."
    return f"{where} is {type(value).__name__}, but it should be an nn.Parameter of shape {shape}."


def _listed(keys: list, shape_of: dict, limit: int = 4) -> str:
    shown = ", ".join(f"{key} {tuple(shape_of[key].shape)}" for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _renamed(missing: list, extra: list) -> str | None:
    """'`attn` should be called `self_attn`' when renaming one attribute would explain every difference."""

    def split(key):
        head, _, tail = key.partition(".")
        return head, tail

    theirs = {split(key) for key in extra}
    pairs = {(own, wanted) for wanted, tail in map(split, missing) for own, t in theirs if t == tail}
    if len(pairs) == 1 and len(missing) == len(extra):
        own, wanted = pairs.pop()
        if all(split(key)[0] == wanted for key in missing) and all(split(key)[0] == own for key in extra):
            return f"Rename the attribute `{own}` to `{wanted}`."
    return None


def load_weights(model: nn.Module, state: dict, name: str) -> None:
    """Load the case's weights, or say in one short sentence which attribute is missing, extra, or misshapen."""
    own = dict(model.named_parameters())
    for key, value in state.items():
        if key not in own:
            problem = _not_a_parameter(model, key, tuple(value.shape), name)
            if problem:
                raise CheckFailure(problem)
    missing = [key for key in state if key not in own]
    extra = [key for key in own if key not in state]
    if missing or extra:
        listed = (("missing", missing, state), ("unexpected", extra, own))
        parts = [f"{what} {_listed(keys, shape_of)}" for what, keys, shape_of in listed if keys]
        biases = [key for key in extra if key.endswith("bias") and key.removesuffix("bias") + "weight" in state]
        advice = _renamed(missing, extra) or (
            "The checks expect these layers made with bias=False."
            if biases and len(biases) == len(extra)
            else "The checks load the weights by the attribute names of the instructions: use those names."
        )
        raise CheckFailure(
            f"`{name}` does not have the parameters the checks expect: " + "; ".join(parts) + f". {advice}"
        )
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckFailure(
                f"`{name}`'s parameter {key} should have shape {tuple(value.shape)}, "
                f"but it has shape {tuple(own[key].shape)}."
            )
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)
