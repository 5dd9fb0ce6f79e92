"""How an exercise is described to the check engine.

An exercise module (``autograder/exercises/<assignment>.py``) creates one
``Exercise`` per graded function or class and attaches to it, with decorators:

- ``@ex.cases``: the inputs, visible (fixed, stored as fixtures) and hidden
  (fresh from the secret seed, including edge cases);
- ``@ex.prop("...")``: properties that must hold whatever the inputs
  (rows sum to 1, gradients flow, masked weights are exactly 0...). A property
  never calls the student's code itself: given a generator it returns the cases
  it needs and a ``judge`` that reads their results, so the verdict can be
  reached in another process than the one that ran the student's code;
- ``@ex.mistake("...")``: the catalogue of known wrong versions. Each is built
  from the reference (so the catalogue never spells out a solution) and its
  message names the mistake in the student's terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .compare import missing_and_extra
from .errors import CheckFailure

FLOAT_DTYPES = (torch.float32, torch.float64)


def cast(obj: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """Move tensors to ``device`` and floating tensors to ``dtype`` (None keeps dtypes)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and dtype is not None:
            return obj.to(device=device, dtype=dtype)
        return obj.to(device=device)
    if isinstance(obj, tuple):
        return tuple(cast(item, device, dtype) for item in obj)
    if isinstance(obj, list):
        return [cast(item, device, dtype) for item in obj]
    if isinstance(obj, dict):
        return {key: cast(value, device, dtype) for key, value in obj.items()}
    return obj


def shapes(**tensors) -> str:
    """'q (2, 3, 4), k (2, 5, 4)': how a case's inputs are described to the student."""
    parts = []
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{name} {tuple(value.shape)}")
        elif value is None:
            parts.append(f"{name}=None")
        else:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


@dataclass
class Case:
    """One call: ``impl(*args, **kwargs)``, or for a module ``impl(*init)`` loaded with ``state``.

    ``grad``: also backpropagate a fixed weighting of the floating outputs and report the
    gradients of the floating inputs (and of the module's parameters).
    ``inspect``: for a module, only construct it and report its submodules and parameters.
    ``training``: for a module, the mode it runs in (False: after ``model.eval()``, where dropout is off).
    """

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: tuple | None = None
    state: dict | None = None
    grad: bool = False
    inspect: bool = False
    expect_error: bool = False  # a property case that must raise: its error goes to the judge, not the verdict
    training: bool = True

    def to(self, device: torch.device, dtype: torch.dtype | None) -> Case:
        return replace(
            self,
            args=cast(self.args, device, dtype),
            kwargs=cast(self.kwargs, device, dtype),
            state=cast(self.state, device, dtype),
        )

    def as_data(self) -> dict:
        data = {
            "label": self.label,
            "args": self.args,
            "kwargs": self.kwargs,
            "init": self.init,
            "state": self.state,
            "grad": self.grad,
            "inspect": self.inspect,
        }
        if not self.training:  # only when set, so that the fixtures of cases in training mode stay as they are
            data["training"] = False
        return data

    @classmethod
    def from_data(cls, data: dict) -> Case:
        init = tuple(data["init"]) if data["init"] is not None else None
        return cls(
            data["label"],
            tuple(data["args"]),
            dict(data["kwargs"]),
            init,
            data["state"],
            bool(data.get("grad")),
            bool(data.get("inspect")),
            training=bool(data.get("training", True)),
        )


@dataclass
class Result:
    """What running one case produced: plain data only, so it can cross a process boundary."""

    output: Any = None
    grads: dict | None = None  # "args.0", "kwargs.mask", "params.W_q.weight" -> tensor or None
    structure: dict | None = None  # for ``inspect`` cases: {"modules": {...}, "parameters": {...}}
    error: str | None = None  # the sentence that says how the student's code failed
    forbidden: list = field(default_factory=list)  # names of forbidden built-ins it used
    warnings: list = field(default_factory=list)


@dataclass
class Mistake:
    key: str
    message: str  # completes "This looks like a known mistake: ..."
    build: Callable[[Any], Callable]  # reference namespace -> wrong implementation
    expect: str | None = None  # what the failure must say, when not the message (forbidden calls)

    @property
    def expected_text(self) -> str:
        return self.expect or self.message


@dataclass
class Property:
    """``probe(generator) -> (cases, judge)``; ``judge(results, dtype)`` returns None or the failure sentence."""

    description: str
    probe: Callable


class Exercise:
    # What a passing check says instead of counting cases and properties, from the results of its run
    # (chapter 12's training check reports the accuracy and the CPU time): results -> phrase.
    summary: Callable[[list], str] | None = None

    def __init__(
        self,
        name: str,
        assignment: str,
        *,
        outputs: tuple = (),
        forbidden: tuple = (),
        why_forbidden: str = "",
        module: bool = False,
        dtypes: tuple = FLOAT_DTYPES,
        dtype_hint: str = "",
        infinities: str = "",
        points: tuple[int, int] | None = None,
        difficulty: int | None = None,
        minutes: int | None = None,
        task: str = "",
    ):
        _check_declaration(name, points, difficulty, minutes, task)
        self.name = name
        self.assignment = assignment
        self.outputs = outputs  # names of the items of a returned tuple, () for a single value
        self.forbidden = forbidden
        self.why_forbidden = why_forbidden
        self.module = module
        self.dtypes = dtypes  # (None,) when the inputs have no floating dtype to follow
        # Said after a wrong dtype, when "keep the dtype of the inputs" does not fit (no floating inputs,
        # or the point is to change the dtype): which dtype is expected, and how to get it.
        self.dtype_hint = dtype_hint
        # What an infinite entry means in the outputs (e.g. "-inf marks a filtered-out logit: ..."),
        # said when -inf is expected and a number came, or the other way round.
        self.infinities = infinities
        # What the tables and the test cells say (autograder/authoring.py): the points of the visible and the
        # hidden checks, the difficulty from 1 (a few lines) to 5 (a project), the minutes a student needs, and
        # what the student writes, in one line.
        self.points = points
        self.difficulty = difficulty
        self.minutes = minutes
        self.task = task
        self.properties: list[Property] = []
        self.mistakes: list[Mistake] = []
        self._cases: Callable | None = None

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"

    # --- decorators used by the exercise modules -------------------------------------
    def cases(self, make: Callable[[torch.Generator, bool], list]) -> Callable:
        self._cases = make
        return make

    def prop(self, description: str) -> Callable:
        def register(probe: Callable) -> Callable:
            self.properties.append(Property(description, probe))
            return probe

        return register

    def mistake(self, message: str, expect: str | None = None) -> Callable:
        def register(build: Callable) -> Callable:
            self.mistakes.append(Mistake(build.__name__, message, build, expect))
            return build

        return register

    # --- used by the engine -----------------------------------------------------------
    def make_cases(self, generator: torch.Generator, hidden: bool) -> list[Case]:
        return list(self._cases(generator, hidden))

    def instantiate(self, impl: Callable, case: Case, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
        """Build the module of a module exercise, on the run's device and dtype, with the case's weights."""
        model = impl(*case.init)
        if not isinstance(model, nn.Module):
            raise CheckFailure(
                f"`{self.name}(...)` should create a torch.nn.Module, but it made {type(model).__name__}."
            )
        model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
        model.train(case.training)
        if case.state is not None:
            load_weights(model, case.state, self.name)
        return model

    def call(self, impl: Callable, case: Case, device: torch.device, dtype: torch.dtype | None) -> Any:
        """Run one case's forward computation (used for the reference and the catalogue of mistakes)."""
        if not self.module:
            return impl(*case.args, **case.kwargs)
        return self.instantiate(impl, case, device, dtype)(*case.args, **case.kwargs)


def _check_declaration(name: str, points, difficulty, minutes, task) -> None:
    """One sentence on a declared number or text that cannot be right (None: not declared)."""

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if points is not None and not (
        isinstance(points, tuple) and len(points) == 2 and all(whole(p) and p >= 0 for p in points) and sum(points)
    ):
        raise ValueError(
            f"Exercise {name!r}: points should be (visible, hidden), two whole numbers of at least 0 and not both 0, "
            f"not {points!r}."
        )
    if difficulty is not None and not (whole(difficulty) and 1 <= difficulty <= 5):
        raise ValueError(f"Exercise {name!r}: difficulty should be a whole number from 1 to 5, not {difficulty!r}.")
    if minutes is not None and not (whole(minutes) and minutes > 0):
        raise ValueError(f"Exercise {name!r}: minutes should be a whole number above 0, not {minutes!r}.")
    if not isinstance(task, str) or "\n" in task or "|" in task:
        raise ValueError(
            f"Exercise {name!r}: task should be one line of text without '|' (a table cell), not {task!r}."
        )


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
    parts = missing_and_extra(
        missing, extra, lambda keys: f"missing {_listed(keys, state)}", lambda keys: f"unexpected {_listed(keys, own)}"
    )
    if parts:
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


def randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Standard normal float64 numbers on the CPU; cases are cast to the run's device and dtype later."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def random_mask(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """A boolean mask (True = may attend) where every query row keeps at least one key."""
    mask = torch.rand(*shape, generator=generator) < 0.6
    keep = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    return mask.scatter(-1, keep.unsqueeze(-1), True)


def causal(length: int) -> torch.Tensor:
    """The (length, length) causal mask: True on and below the diagonal."""
    return torch.ones(length, length, dtype=torch.bool).tril()


def linear_weight(generator: torch.Generator, out_features: int, in_features: int) -> torch.Tensor:
    """A weight like nn.Linear's default initialisation, from the case's generator."""
    bound = 1 / math.sqrt(in_features)
    return (torch.rand(out_features, in_features, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype | None) -> bool:
    """``a`` and ``b`` agree within the tolerance of ``dtype`` (compared on the CPU in float64)."""
    from .tolerance import tolerance

    rtol, atol = tolerance(dtype or torch.float32)
    return bool(torch.allclose(a.detach().cpu().double(), b.detach().cpu().double(), rtol=rtol, atol=atol))


def gradients_reach(names: dict) -> Callable:
    """A judge for a ``grad`` case: every named input ("args.0" -> "q") gets a finite gradient."""

    def judge(results, dtype):
        grads = results[0].grads or {}
        for key, name in names.items():
            grad = grads.get(key)
            if grad is None or not torch.isfinite(grad).all():
                return (
                    f"No finite gradient reaches `{name}`: keep every step in torch "
                    "(no .detach(), numpy, .item() or torch.tensor(...)), so that the model can learn."
                )
        return None

    return judge


EVAL_MESSAGE = "In eval mode (after model.eval()) dropout must do nothing"


def dropout_off_in_eval(case: Case, index: int, name: str):
    """A property's cases and judge: ``case`` (dropout 0) and the same with dropout=0.5 (``init[index]``) in
    eval mode must give the same output (chapters 8 to 10)."""
    init = case.init[:index] + (0.5,) + case.init[index + 1 :]
    in_eval = replace(case, label=f"{case.label}, with dropout=0.5, in eval mode", init=init, training=False)

    def judge(results, dtype):
        if not close(results[1].output, results[0].output, dtype):
            return (
                f"{EVAL_MESSAGE}, but `{name}` with dropout=0.5 gives another output than with dropout=0. "
                "Use nn.Dropout modules, which follow the module's mode (F.dropout(h, p) without "
                "training=self.training stays on in eval mode)."
            )
        return None

    return [case, in_eval], judge


def dropout_stays_on(base):
    """A wrong version of ``base`` whose dropout ignores eval mode (as F.dropout(h, p) does)."""

    class Wrong(base):
        def train(self, mode: bool = True):
            super().train(mode)
            for module in self.modules():
                if isinstance(module, nn.Dropout):
                    module.training = True
            return self

    return Wrong
