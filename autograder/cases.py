"""Shared case builders and mistake helpers for the exercise modules.

Case builders draw inputs from the case's generator (``randn``, ``transposed``, ``random_mask``,
the weights of attention, feed-forward and norm layers); property helpers return a property's
``(cases, judge)``; mistake helpers build a known wrong version from the reference in a line or two
(``with_attributes``, ``dropout_stays_on``) or register a mistake several chapters share
(``lent_component``, ``dropout_in_eval``). Every chapter module imports from here, never from another
chapter, so each chapter reads on its own.

A builder that a fixture depends on must keep drawing the same numbers in the same order:
the visible fixtures are compared byte for byte.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .compare import describe
from .spec import Case, Exercise, Mistake
from .tolerance import tolerance


# --------------------------------------------------------------------------------- inputs
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


def randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Standard normal float64 numbers on the CPU; cases are cast to the run's device and dtype later."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def transposed(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """A non-contiguous tensor of the given shape (a transposed view), to catch .view() on inputs."""
    return randn(generator, *shape[:-2], shape[-1], shape[-2], scale=scale).transpose(-1, -2)


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


# ------------------------------------------------------------------------------ judges
def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype | None) -> bool:
    """``a`` and ``b`` agree within the tolerance of ``dtype`` (compared on the CPU in float64)."""
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


# ------------------------------------------------------------- layers of chapters 8 to 10
def padding_mask(lengths: list[int], length: int) -> torch.Tensor:
    """(B, 1, 1, T): True for the real tokens of each sequence, which come first."""
    return (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def attention_state(g: torch.Generator, d_model: int, prefix: str) -> dict:
    state = {}
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        state[f"{prefix}.{name}.weight"] = linear_weight(g, d_model, d_model)
        state[f"{prefix}.{name}.bias"] = 0.1 * randn(g, d_model)
    return state


def ffn_state(g: torch.Generator, d_model: int, d_ff: int, prefix: str) -> dict:
    return {
        f"{prefix}.linear1.weight": linear_weight(g, d_ff, d_model),
        f"{prefix}.linear1.bias": 0.1 * randn(g, d_ff),
        f"{prefix}.linear2.weight": linear_weight(g, d_model, d_ff),
        f"{prefix}.linear2.bias": 0.1 * randn(g, d_model),
    }


def norm_state(g: torch.Generator, d_model: int, prefix: str) -> dict:
    """LayerNorm weights away from (1, 0), so that swapped or missing norms show."""
    return {f"{prefix}.weight": 1 + 0.3 * randn(g, d_model), f"{prefix}.bias": 0.3 * randn(g, d_model)}


def encoder_layer_state(g: torch.Generator, d_model: int, d_ff: int, prefix: str = "") -> dict:
    return {
        **attention_state(g, d_model, f"{prefix}self_attn"),
        **ffn_state(g, d_model, d_ff, f"{prefix}ff"),
        **norm_state(g, d_model, f"{prefix}norm1"),
        **norm_state(g, d_model, f"{prefix}norm2"),
    }


def builtin_layer_state(state: dict, prefix: str, attention: dict) -> dict:
    """A layer's weights under PyTorch's names (nn.TransformerEncoderLayer / nn.TransformerDecoderLayer).

    ``attention`` maps our attention attributes to PyTorch's: {"self_attn": "self_attn", "cross_attn": "multihead_attn"}.
    """
    out = {}
    for ours, theirs in attention.items():
        out[f"{theirs}.in_proj_weight"] = torch.cat([state[f"{prefix}{ours}.{p}_proj.weight"] for p in "qkv"])
        out[f"{theirs}.in_proj_bias"] = torch.cat([state[f"{prefix}{ours}.{p}_proj.bias"] for p in "qkv"])
        out[f"{theirs}.out_proj.weight"] = state[f"{prefix}{ours}.out_proj.weight"]
        out[f"{theirs}.out_proj.bias"] = state[f"{prefix}{ours}.out_proj.bias"]
    for key, value in state.items():
        rest = key.removeprefix(prefix)
        if key.startswith(prefix) and rest.startswith(("ff.", "norm")):
            out[rest.removeprefix("ff.")] = value
    return out


def builtin_mask(mask: torch.Tensor, batch: int, n_heads: int, q_len: int, k_len: int) -> torch.Tensor:
    """Our mask (True = may attend) as PyTorch's 3-D attn_mask (B * h, T_q, T_k), True = masked out.

    (A key_padding_mask would do for padding, but checking it makes PyTorch import sympy: seconds.)"""
    return ~mask.expand(batch, n_heads, q_len, k_len).reshape(batch * n_heads, q_len, k_len)


def mask_description(mask) -> str:
    return f", mask {tuple(mask.shape)}" if mask is not None else ", no mask"


@contextlib.contextmanager
def patched_forward(module: nn.Module, make):
    """Run ``module`` with its forward replaced by ``make(original_forward)`` for the duration."""
    original = module.forward
    module.forward = make(original)
    try:
        yield
    finally:
        del module.forward


def dropped_sublayers(cases: list, index: int, norms: tuple, name: str):
    """A property's cases and judge: with dropout=1.0 (``init[index]``) in training mode every sublayer's
    output is dropped, so post-norm gives the norms applied to x in turn, and pre-norm gives x itself."""
    dropped = [
        replace(
            c,
            label=f"{c.label}, with dropout=1.0, in training mode",
            init=c.init[:index] + (1.0,) + c.init[index + 1 :],
        )
        for c in cases
    ]

    def expected(case):
        x = case.args[0]
        if case.init[index + 1]:  # norm_first
            return x
        for norm in norms:
            centred = x - x.mean(-1, keepdim=True)
            x = (
                centred / (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * case.state[f"{norm}.weight"]
                + case.state[f"{norm}.bias"]
            )
        return x

    def judge(results, dtype):
        for case, result in zip(dropped, results):
            if not close(result.output, expected(case), dtype):
                order = "pre-norm" if case.init[index + 1] else "post-norm"
                should = "x itself" if case.init[index + 1] else " of ".join(reversed(norms)) + " of x"
                return (
                    f"With dropout=1.0 in training mode every sublayer's output is dropped, so `{name}` in "
                    f"{order} should return {should}; yours does not. Apply one nn.Dropout to each sublayer's "
                    "output, before it is added to the residual."
                )
        return None

    return dropped, judge


# -------------------------------------------------------------------- wrong versions
def shape_problem(output: Any, shape: tuple, call: str) -> str | None:
    """ "{call} should have shape {shape}, got ..." when ``output`` is not a tensor of that shape, else None."""
    if isinstance(output, torch.Tensor) and tuple(output.shape) == shape:
        return None
    return f"{call} should have shape {shape}, got {describe(output)}."


def output_judge(shape: tuple, call: str) -> Callable:
    """Make ``judge(output, dtype)``, which reads the first case's output, a property's judge: it runs once that
    output is a tensor of ``shape``; before, the sentence is "{call} should have shape {shape}, got ..."."""

    def wrap(judge: Callable) -> Callable:
        def checked(results, dtype):
            output = results[0].output
            return shape_problem(output, shape, call) or judge(output, dtype)

        return checked

    return wrap


def gradients_flow(case: Case, names: dict):
    """A property's cases and judge: ``case``, run with gradients, gives every named input a finite gradient."""
    return [replace(case, grad=True)], gradients_reach(names)


def matches_builtin(cases: list, builtin_output: Callable[[Case], torch.Tensor], differs: str):
    """A property's cases and judge: each case's output equals ``builtin_output(case)`` (PyTorch's own module given
    the case's weights, in float64 on the CPU); ``differs`` is the sentence when not, a format string of the
    ``case`` and the largest difference ``error`` ("With norm_first={case.init[4]}, ... ({error:.3g}).")."""

    def judge(results, dtype):
        for case, result in zip(cases, results):
            expected = builtin_output(case)
            if not close(result.output, expected, dtype):
                error = (result.output.detach().cpu().double() - expected).abs().max().item()
                return differs.format(case=case, error=error)
        return None

    return cases, judge


def outputs_agree(cases: list, message: str, part: Callable = lambda output: output, part_of_first: Callable = None):
    """A property's cases and judge: ``part`` of the second case's output equals ``part_of_first`` (default: ``part``)
    of the first's (changing later tokens, appending padding: the outputs that must not change); ``message`` when not,
    and when the two are not tensors of one shape."""
    first = part_of_first or part

    def judge(results, dtype):
        second_part, first_part = part(results[1].output), first(results[0].output)
        if not (isinstance(second_part, torch.Tensor) and isinstance(first_part, torch.Tensor)):
            return message
        agree = second_part.shape == first_part.shape and close(second_part, first_part, dtype)
        return None if agree else message

    return cases, judge


def raises(case: Case, error: str, otherwise: str, instead: str):
    """A property's cases and judge: ``case`` must raise ``error`` ("ValueError").

    ``otherwise`` is the sentence when it raises nothing; ``instead`` starts the one when it raises another
    error ("{instead} should raise ValueError. Instead: ...")."""
    case = replace(case, expect_error=True)

    def judge(results, dtype):
        raised = results[0].error
        if raised is None:
            return otherwise
        if f"raised {error}" not in raised:
            return f"{instead} should raise {error}. Instead: {raised}"
        return None

    return [case], judge


def parts_problem(structure: dict, owner: str, expected: dict) -> str | None:
    """Which submodule of an ``inspect`` case's module is missing or of another type than ``expected``
    ({name: type name}), or None; ``owner`` is the call that made the module ("EncoderLayer(8, 2, 16)")."""
    modules = structure.get("modules", {})
    for name, kind in expected.items():
        found = modules.get(name)
        if found is None or found["type"] != kind:
            return f"{owner}.{name} should be a {kind}, but it is {found['type'] if found else 'missing'}."
    return None


def linear_layers_problem(structure: dict, owner: str, expected: dict) -> str | None:
    """What is wrong with the nn.Linear layers of an ``inspect`` case's module, or None.

    ``expected`` maps each layer's name to its repr ("in_features=6, out_features=4, bias=False");
    ``owner`` is the call that made the module, as the messages name it ("SelfAttention(6, 4)")."""
    modules = structure.get("modules", {})
    for name, text in expected.items():
        layer = modules.get(name)
        if layer is None or layer["type"] != "Linear":
            return f"{owner}.{name} should be an nn.Linear, but it is {layer['type'] if layer else 'missing'}."
        if layer["repr"] != text:
            return f"{owner}.{name} should be Linear({text}), but it is Linear({layer['repr']})."
    return None


def has_linear_layers(case: Case, owner: str, expected: dict):
    """A property's cases and judge: the module of the ``inspect`` case has the layers ``expected``
    (see ``linear_layers_problem``)."""
    return [case], lambda results, dtype: linear_layers_problem(results[0].structure, owner, expected)


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


@contextlib.contextmanager
def attributes(obj: Any, values: dict):
    """Set the attributes ``values`` of ``obj`` for the duration, and restore them afterwards."""
    saved = {name: getattr(obj, name) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


def with_attributes(base: type, change: Callable[[nn.Module], dict]) -> type:
    """A wrong version of the module class ``base`` whose forward runs with the attributes ``change(self)``
    (``lambda self: {"norm_first": False}``, ``lambda self: {"norm1": self.norm2, "norm2": self.norm1}``)."""

    class Wrong(base):
        def forward(self, *args, **kwargs):
            with attributes(self, change(self)):
                return super().forward(*args, **kwargs)

    return Wrong


def with_parameters(base: type, change: Callable[[dict, nn.Module], dict]) -> type:
    """A wrong version of ``base`` whose forward runs with some parameters' values replaced.

    ``change(params, model)`` gets the parameters by name (detached) and returns the replaced ones
    (``{"W_k.weight": params["W_q.weight"]}``: the keys made with W_q)."""

    class Wrong(base):
        def forward(self, *args, **kwargs):
            params = dict(self.named_parameters())
            replaced = change({name: p.detach() for name, p in params.items()}, self)
            with replaced_data({params[name]: value for name, value in replaced.items()}):
                return super().forward(*args, **kwargs)

    return Wrong


@contextlib.contextmanager
def replaced_data(values: dict):
    """Give each tensor (a key) the data ``values[tensor]`` for the duration, and restore it afterwards."""
    saved = {tensor: tensor.data for tensor in values}
    for tensor, value in values.items():
        tensor.data = value
    try:
        yield
    finally:
        for tensor, value in saved.items():
            tensor.data = value


def with_forward(base: type, forward: Callable[..., Any], method: str = "forward") -> type:
    """A wrong version of the module class ``base`` whose ``method`` (its forward unless named) is
    ``forward(self, right, *args, **kwargs)``, where ``right`` is the right one
    (``lambda self, right, x: right(torch.zeros_like(x))``: x is ignored)."""

    class Wrong(base):
        pass

    def wrong(self, *args, **kwargs):
        return forward(self, getattr(super(Wrong, self), method), *args, **kwargs)

    setattr(Wrong, method, wrong)
    return Wrong


def with_output(base: type, change: Callable[..., Any]) -> type:
    """A wrong version of the module class ``base`` whose output is ``change(self, output, *args, **kwargs)``."""

    class Wrong(base):
        def forward(self, *args, **kwargs):
            return change(self, super().forward(*args, **kwargs), *args, **kwargs)

    return Wrong


def changed_output(function: Callable, change: Callable[..., Any]) -> Callable:
    """A wrong version of ``function`` that returns ``change(output, *args, **kwargs)``."""

    def wrong(*args, **kwargs):
        return change(function(*args, **kwargs), *args, **kwargs)

    return wrong


def ignoring(base: type, *names: str) -> type:
    """A wrong version of the module class ``base`` whose forward ignores the arguments ``names``:
    they keep their defaults (``ignoring(ref.EncoderLayer, "mask")``: the mask is never used)."""
    signature = inspect.signature(base.forward)

    class Wrong(base):
        def forward(self, *args, **kwargs):
            call = signature.bind(self, *args, **kwargs)
            for name in names:
                call.arguments.pop(name, None)
            return super().forward(*call.args[1:], **call.kwargs)

    return Wrong


def with_parts(base: type, make: dict) -> type:
    """A wrong version of the module class ``base`` whose forward runs with the forward of some parts replaced.

    ``make[part](original, call)`` returns the forward of the submodule ``part`` for one call: ``original`` is
    its own forward; ``call`` holds the call's arguments by name and ``originals``, every replaced part's own
    forward (``{"ff": lambda original, call: lambda h: original(call["x"])}``: the feed-forward reads x)."""
    signature = inspect.signature(base.forward)

    class Wrong(base):
        def forward(self, *args, **kwargs):
            arguments = signature.bind(self, *args, **kwargs)
            arguments.apply_defaults()
            call = {**arguments.arguments, "originals": {part: getattr(self, part).forward for part in make}}
            with contextlib.ExitStack() as stack:
                for part, replace_ in make.items():
                    forward = lambda original, r=replace_: r(original, call)  # noqa: E731
                    stack.enter_context(patched_forward(getattr(self, part), forward))
                return super().forward(*args, **kwargs)

    return Wrong


def query_subtracted(attention: Callable) -> Callable:
    """An attention forward that returns its output minus the query: added back to the residual, it leaves
    attention(x) alone (the residual around that attention is missing)."""

    def forward(q, k, v, mask=None):
        out, weights = attention(q, k, v, mask)
        return out - q, weights

    return forward


def also_calls(base: type, call: Callable[..., Any]) -> type:
    """A right version of ``base`` that also calls ``call(self, *args, **kwargs)`` (a forbidden built-in) first."""

    class Wrong(base):
        def forward(self, *args, **kwargs):
            call(self, *args, **kwargs)
            return super().forward(*args, **kwargs)

    return Wrong


# ------------------------------------------------------------------ mistakes shared by chapters
def add_mistake(exercise: Exercise, key: str, message: str, build: Callable, expect: str | None = None) -> None:
    """Add a mistake to the catalogue (as ``@exercise.mistake`` does), under the name ``key``."""
    exercise.mistakes.append(Mistake(key, message, build, expect))


def dropout_in_eval(exercise: Exercise) -> None:
    """The mistake "dropout stays on in eval mode" (as F.dropout(h, p) does), for a module exercise."""
    add_mistake(
        exercise,
        "dropout_in_eval",
        "dropout stays on in eval mode",
        lambda ref: dropout_stays_on(getattr(ref, exercise.name)),
        expect=EVAL_MESSAGE,
    )


def mask_ignored(exercise: Exercise) -> None:
    """The mistake of an attention module that never uses its ``mask`` (chapters 4 to 6)."""
    add_mistake(
        exercise, "ignores_mask", "the mask is ignored.", lambda ref: ignoring(getattr(ref, exercise.name), "mask")
    )


def uses_multihead_attention(exercise: Exercise, d_model_of: Callable[[nn.Module], int]) -> None:
    """The mistake of an attention module that calls nn.MultiheadAttention (chapters 4 to 6); ``d_model_of(module)``
    gives the size to make it with."""
    add_mistake(
        exercise,
        "builtin",
        "uses nn.MultiheadAttention",
        lambda ref: also_calls(
            getattr(ref, exercise.name),
            lambda self, *args, **kwargs: nn.MultiheadAttention(d_model_of(self), 1, batch_first=True),
        ),
        expect="uses torch.nn.MultiheadAttention",
    )


def scores_scaled(base: type, factor: Callable[[dict], float]) -> type:
    """A wrong version of the attention module class ``base`` (projections ``W_q``, ``W_k``, ``W_v``: chapters 4 and
    5) whose scores are multiplied by ``factor(params)``: it runs with ``W_q.weight`` multiplied by it."""
    return with_parameters(base, lambda params, model: {"W_q.weight": params["W_q.weight"] * factor(params)})


def scores_not_scaled(exercise: Exercise, message: str) -> None:
    """The mistake of an attention module with ``W_q``, ``W_k``, ``W_v`` that never divides its scores by the
    square root of the size of its queries and keys (``W_q``'s out_features)."""
    add_mistake(
        exercise,
        "no_scaling",
        message,
        lambda ref: scores_scaled(getattr(ref, exercise.name), lambda p: math.sqrt(p["W_q.weight"].shape[0])),
    )


PROJECTED = {"W_q": "queries", "W_k": "keys", "W_v": "values"}


def projection_swapped(exercise: Exercise, right: str, used: str) -> None:
    """The mistake "the keys are made with W_q instead of W_k" (``right`` "W_k", ``used`` "W_q") of an attention
    module with the projections ``W_q``, ``W_k``, ``W_v`` (chapters 4 and 5)."""
    made = PROJECTED[right]
    add_mistake(
        exercise,
        f"{made}_from_{used.lower()}",
        f"the {made} are made with {used} instead of {right}.",
        lambda ref: with_parameters(
            getattr(ref, exercise.name), lambda p, model: {f"{right}.weight": p[f"{used}.weight"]}
        ),
    )


def weights_not_transposed(exercise: Exercise, message: str) -> None:
    """The mistake of a module that multiplies its inputs by its nn.Linear weights as they are (x @ W.weight),
    where an nn.Linear computes x @ W.weight.T."""
    add_mistake(
        exercise,
        "transposed_weights",
        message,
        lambda ref: with_parameters(getattr(ref, exercise.name), lambda p, model: {k: v.T for k, v in p.items()}),
    )


NORM_FIRST_IGNORED = (
    "`norm_first` is ignored: with norm_first=True each sublayer reads norm(x) and the residual adds the raw x "
    "(pre-norm)."
)


def norm_first_ignored(exercise: Exercise) -> None:
    """The mistake of a layer that always runs in post-norm, whatever its ``norm_first`` (chapters 9 and 10)."""
    add_mistake(
        exercise,
        "always_post_norm",
        NORM_FIRST_IGNORED,
        lambda ref: with_attributes(getattr(ref, exercise.name), lambda self: {"norm_first": False}),
    )


def lent_component(exercise: Exercise, component: type, what: str) -> None:
    """The mistake of handing in the course's ready-made ``component`` (``what``: "encoder layer") as one's own."""
    add_mistake(
        exercise,
        "lent_component",
        f"uses the course's ready-made {what}",
        lambda ref: type("Wrong", (component,), {}),
        expect=f"uses {component.__module__}.{component.__qualname__}",
    )


# ------------------------------------------------------------------ exercises shared by chapters
def interleaving(d_model: int, n_heads: int, device) -> torch.Tensor:
    """Feature order of a '(d_head h)' split: position j*d_head + c holds feature c*h + j."""
    return torch.arange(d_model, device=device).view(d_model // n_heads, n_heads).T.reshape(-1)


def splits_into_heads(exercise: Exercise, non_contiguous: bool = False) -> None:
    """The cases, property and mistakes of ``name(x, n_heads)``: (B, T, d_model) -> (B, h, T, d_head), where head j
    takes features j*d_head:(j+1)*d_head (``to_heads`` in chapter 0, ``split_heads`` in chapter 6).

    ``non_contiguous``: the hidden cases also give a non-contiguous x."""
    name = exercise.name

    @exercise.cases
    def _(g, hidden):
        sizes = [(2, 3, 8, 2), (1, 4, 6, 3), (2, 5, 12, 4)]
        if hidden:
            sizes = [(3, 7, 16, 4), (2, 1, 6, 6), (1, 5, 9, 1), (4, 3, 20, 5)]
        cases = [Case(shapes(x=x, n_heads=h), (x, h)) for x, h in ((randn(g, b, t, d), h) for b, t, d, h in sizes)]
        if hidden and non_contiguous:
            x = transposed(g, 2, 6, 12)
            cases.append(Case(f"a non-contiguous {shapes(x=x, n_heads=3)}", (x, 3)))
        return cases

    @exercise.prop("head j holds features j*d_head to (j+1)*d_head of every token")
    def _(g):
        x = randn(g, 2, 3, 12)

        def judge(results, dtype):
            got = results[0].output
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != (2, 3, 3, 4):
                return f"{name}(x, 3) with x of shape (2, 3, 12) should be a (2, 3, 3, 4) tensor, got {describe(got)}."
            if not close(got[1, 2, 0], x[1, 0, 8:12], dtype):
                return (
                    f"{name}(x, 3)[1, 2, 0] (batch 1, head 2, token 0) should be x[1, 0, 8:12], the third block "
                    "of 4 features of that token, but it is not."
                )
            return None

        return [Case(shapes(x=x, n_heads=3), (x, 3))], judge

    def reference(ref):
        return getattr(ref, name)

    @exercise.mistake(
        "the features are split as '(d_head h)' instead of '(h d_head)': head j must take the "
        "contiguous block j*d_head:(j+1)*d_head, not every h-th feature."
    )
    def interleaved(ref):
        return lambda x, n_heads: reference(ref)(x[..., interleaving(x.shape[-1], n_heads, x.device)], n_heads)

    @exercise.mistake(
        "the head axis and the sequence axis are not swapped: the result should be "
        "(B, h, T, d_head), not (B, T, h, d_head)."
    )
    def not_transposed(ref):
        return lambda x, n_heads: reference(ref)(x, n_heads).transpose(1, 2)

    @exercise.mistake(
        "x was reshaped to (B, h, T, d_head) directly, which mixes tokens and heads. Split the "
        "last axis into (h, d_head) first, then move h before T."
    )
    def plain_reshape(ref):
        return lambda x, n_heads: x.reshape(x.shape[0], n_heads, x.shape[1], x.shape[2] // n_heads)

    @exercise.mistake("n_heads is used as the size of each head instead of the number of heads.")
    def heads_and_size_swapped(ref):
        return lambda x, n_heads: reference(ref)(x, x.shape[-1] // n_heads)
