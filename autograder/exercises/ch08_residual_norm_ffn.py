"""Chapter 8: layer normalisation, the position-wise feed-forward network, the residual sublayer connection.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import components
from .. import forbidden as capability
from ..calling import MODULE, Module
from ..cases import (close, dropout_in_eval, dropout_off_in_eval, gradients_flow, has_linear_layers, lent_component,
                     linear_weight, raises, randn, shapes, transposed, with_attributes, with_forward, with_output)
from ..spec import Case, Exercise

ASSIGNMENT = "ch08_residual_norm_ffn"


def _norm_state(g: torch.Generator, d: int, prefix: str = "") -> dict:
    """LayerNorm weights away from (1, 0), so that a forgotten weight or bias shows."""
    return {f"{prefix}weight": 1 + 0.5 * randn(g, d), f"{prefix}bias": 0.5 * randn(g, d)}


# ------------------------------------------------------------------------------ layer_norm
# nn.LayerNorm is not listed: it calls F.layer_norm, which the runtime watch sees, and naming it here
# would make the grader's source scan flag SublayerConnection, which must use nn.LayerNorm.
layer_norm = Exercise(
    "layer_norm", ASSIGNMENT,
    forbidden=(capability.NORMALIZATION,),
    why_forbidden="write the normalisation yourself from mean, variance and sqrt", points=(1, 2), difficulty=2, minutes=20, task="LayerNorm over the last axis: biased variance, `eps` inside the square root, then `weight` and `bias`",
)


def _ln_case(g, x, eps=None, note=""):
    d = x.shape[-1]
    weight, bias = 1 + 0.5 * randn(g, d), 0.5 * randn(g, d)
    label = shapes(x=x, weight=weight, bias=bias) + (f", eps={eps}" if eps is not None else "") + note
    return Case(label, (x, weight, bias), {} if eps is None else {"eps": eps})


@layer_norm.cases
def _(g, hidden):
    if not hidden:
        return [
            _ln_case(g, randn(g, 4, 6)),
            _ln_case(g, randn(g, 2, 3, 8)),
            _ln_case(g, randn(g, 3, 5, scale=1e-3), note=" (rows whose variance is close to eps)"),
            _ln_case(g, randn(g, 2, 4), eps=0.1),
        ]
    return [
        _ln_case(g, randn(g, 5, 16, scale=2)),
        _ln_case(g, randn(g, 2, 3, 4, 10)),
        _ln_case(g, randn(g, 4, 7, scale=1e-3), eps=1e-4, note=" (small variance)"),
        _ln_case(g, randn(g, 3, 1), note=" (a single feature)"),
        _ln_case(g, randn(g, 1, 9) + 5, eps=0.5),
        _ln_case(g, transposed(g, 6, 5), note=" (non-contiguous x)"),
        _ln_case(g, randn(g, 8, 32, scale=30)),
    ]


@layer_norm.prop("with weight 1 and bias 0, every row has mean 0 and variance 1")
def _(g):
    x = randn(g, 3, 4, 12, scale=5) + 2
    ones, zeros = torch.ones(12, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)

    def judge(results, dtype):
        out = results[0].output
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            return None  # the comparisons already say what is wrong with the shape
        out = out.detach().cpu().double()
        mean, var = out.mean(-1), out.var(-1, unbiased=False)
        if not torch.allclose(mean, torch.zeros_like(mean), atol=1e-4):
            return (f"With weight 1 and bias 0 every row (over the last axis) should have mean 0, but the row means "
                    f"reach {mean.abs().max().item():.3g}. Subtract the mean of the last axis.")
        if not torch.allclose(var, torch.ones_like(var), atol=1e-3):
            return (f"With weight 1 and bias 0 every row should have (biased) variance close to 1, but the row "
                    f"variances range from {var.min().item():.4g} to {var.max().item():.4g}.")
        return None
    return [Case(shapes(x=x) + ", weight 1, bias 0", (x, ones, zeros))], judge


@layer_norm.prop("each row is normalised on its own: changing one row leaves the others unchanged")
def _(g):
    case = _ln_case(g, randn(g, 5, 6))
    x = case.args[0]
    changed = x.clone()
    changed[0] = changed[0] * 3 + 4
    other = Case(case.label + ", first row changed", (changed,) + case.args[1:])

    def judge(results, dtype):
        first, second = results[0].output, results[1].output
        if not close(first[1:], second[1:], dtype):
            return ("Changing the first row of x changed the output of other rows: LayerNorm computes the mean and "
                    "variance of each row (the last axis) on its own, never across the batch (that is BatchNorm).")
        return None
    return [case, other], judge


layer_norm.prop("gradients flow back to x, weight and bias",
                lambda g: gradients_flow(_ln_case(g, randn(g, 2, 5)),
                                         {"args.0": "x", "args.1": "weight", "args.2": "bias"}))


@layer_norm.mistake("the variance is the unbiased one (divided by d - 1). LayerNorm uses the biased variance, "
                    "divided by d: x.var(-1, unbiased=False) or ((x - mean) ** 2).mean(-1).")
def unbiased_variance(ref):
    def wrong(x, weight, bias, eps=1e-5):
        normalised = ref.layer_norm(x, torch.ones_like(weight), torch.zeros_like(bias), eps)  # (x - mean) / sqrt(var + eps)
        biased, unbiased = x.var(-1, unbiased=False, keepdim=True), x.var(-1, unbiased=True, keepdim=True)
        return normalised * ((biased + eps) / (unbiased + eps)).sqrt() * weight + bias
    return wrong


@layer_norm.mistake("eps is added outside the square root: divide by sqrt(var + eps), not by sqrt(var) + eps.")
def eps_outside_sqrt(ref):
    def wrong(x, weight, bias, eps=1e-5):
        normalised = ref.layer_norm(x, torch.ones_like(weight), torch.zeros_like(bias), eps)  # (x - mean) / sqrt(var + eps)
        var = x.var(-1, unbiased=False, keepdim=True)
        return normalised * (var + eps).sqrt() / (var.sqrt() + eps) * weight + bias
    return wrong


@layer_norm.mistake("the statistics are taken over the batch (axis 0), like BatchNorm; LayerNorm normalises each "
                    "row over its features (the last axis).")
def over_the_batch(ref):
    return lambda x, weight, bias, eps=1e-5: ref.layer_norm(
        x.movedim(0, -1), torch.ones(x.shape[0], dtype=x.dtype, device=x.device),
        torch.zeros(x.shape[0], dtype=x.dtype, device=x.device), eps).movedim(-1, 0) * weight + bias


@layer_norm.mistake("`weight` and `bias` are not applied: after normalising, multiply by weight and add bias.")
def no_affine(ref):
    return lambda x, weight, bias, eps=1e-5: ref.layer_norm(x, torch.ones_like(weight), torch.zeros_like(bias), eps)


@layer_norm.mistake("the centred x is divided by the variance instead of the standard deviation (its square root).")
def divides_by_variance(ref):
    def wrong(x, weight, bias, eps=1e-5):
        normalised = ref.layer_norm(x, torch.ones_like(weight), torch.zeros_like(bias), eps)  # (x - mean) / sqrt(var + eps)
        return normalised / (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt() * weight + bias
    return wrong


@layer_norm.mistake("the `eps` argument is ignored: use the eps you are given (1e-5 is only its default).")
def ignores_eps(ref):
    return lambda x, weight, bias, eps=1e-5: ref.layer_norm(x, weight, bias)


@layer_norm.mistake("calls the built-in layer norm", expect="uses torch.nn.functional.layer_norm")
def builtin(ref):
    return lambda x, weight, bias, eps=1e-5: F.layer_norm(x, x.shape[-1:], weight, bias, eps)


# ------------------------------------------------------------------ PositionwiseFeedForward
# float64 first: the tanh approximation of GELU differs from the exact GELU by less than float32's
# tolerance for naming a mistake, so float64 is where it can be recognised.
PositionwiseFeedForward = Exercise(
    "PositionwiseFeedForward", ASSIGNMENT, call=MODULE, dtypes=(torch.float64, torch.float32),
    forbidden=(components.PositionwiseFeedForward,),
    why_forbidden="the course's ready-made feed-forward network is lent to later chapters; here you build it", points=(1, 2), difficulty=2, minutes=20, task="the two-layer FFN with attributes `linear1`, `linear2`; ReLU or exact GELU; dropout before `linear2`",
)


def _ffn_case(g, x, d_ff, activation=None, note=""):
    d_model = x.shape[-1]
    state = {"linear1.weight": linear_weight(g, d_ff, d_model), "linear1.bias": 0.3 * randn(g, d_ff),
             "linear2.weight": linear_weight(g, d_model, d_ff), "linear2.bias": 0.3 * randn(g, d_model)}
    init = (d_model, d_ff) if activation is None else (d_model, d_ff, 0.0, activation)
    act = f", activation={activation!r}" if activation else ""
    return Case(f"PositionwiseFeedForward(d_model={d_model}, d_ff={d_ff}{act}) on {shapes(x=x)}{note}", (x,),
                init=init, state=state)


@PositionwiseFeedForward.cases
def _(g, hidden):
    if not hidden:
        return [_ffn_case(g, randn(g, 2, 3, 4), 8), _ffn_case(g, randn(g, 1, 4, 6), 12, "gelu"),
                _ffn_case(g, randn(g, 5, 4), 6, "relu", " (no batch axis)")]
    return [_ffn_case(g, randn(g, 3, 7, 16), 64), _ffn_case(g, randn(g, 2, 5, 8), 32, "gelu"),
            _ffn_case(g, randn(g, 4, 1, 6), 10, note=" (length 1)"),
            _ffn_case(g, randn(g, 2, 2, 3, 8), 16, "gelu", " (two batch axes)"),
            _ffn_case(g, transposed(g, 2, 6, 5), 7, note=" (non-contiguous x)")]


PositionwiseFeedForward.prop("linear1 is nn.Linear(d_model, d_ff) and linear2 is nn.Linear(d_ff, d_model)",
                             lambda g: has_linear_layers(
                                 Case("PositionwiseFeedForward(d_model=6, d_ff=10)", init=(6, 10), inspect=True),
                                 "PositionwiseFeedForward(6, 10)", {"linear1": "in_features=6, out_features=10, bias=True",
                                                                    "linear2": "in_features=10, out_features=6, bias=True"}))


@PositionwiseFeedForward.prop("each position is transformed on its own")
def _(g):
    case = _ffn_case(g, randn(g, 2, 5, 4), 8)
    changed = case.args[0].clone()
    changed[:, 2] = randn(g, 2, 4)
    other = Case(case.label + ", position 2 changed", (changed,), init=case.init, state=case.state)

    def judge(results, dtype):
        first, second = results[0].output, results[1].output
        keep = [0, 1, 3, 4]
        if not close(first[:, keep], second[:, keep], dtype):
            return ("Changing the input at position 2 changed the output at other positions. The feed-forward "
                    "network is position-wise: it applies the same two layers to each position's vector alone.")
        return None
    return [case, other], judge


@PositionwiseFeedForward.prop("dropout acts on the hidden layer: with dropout=1.0 in training mode the output is linear2's bias")
def _(g):
    x = randn(g, 2, 3, 4)
    case = _ffn_case(g, x, 8)
    dropped = Case("PositionwiseFeedForward(d_model=4, d_ff=8, dropout=1.0), in training mode, on " + shapes(x=x),
                   (x,), init=(4, 8, 1.0), state=case.state)
    bias = case.state["linear2.bias"]

    def judge(results, dtype):
        out = results[0].output
        if not close(out, bias.expand(x.shape), dtype):
            return ("With dropout=1.0 in training mode every hidden unit is dropped, so the output should be "
                    "linear2's bias at every position; yours is not. Put an nn.Dropout(dropout) between the "
                    "activation and linear2 (not on the input, not on the output).")
        return None
    return [dropped], judge


PositionwiseFeedForward.prop("in eval mode dropout is off: with dropout=0.5 the output equals the output without dropout",
                             lambda g: dropout_off_in_eval(_ffn_case(g, randn(g, 2, 3, 4), 8), 2,
                                                           "PositionwiseFeedForward"))


@PositionwiseFeedForward.prop("an activation other than 'relu' or 'gelu' raises ValueError")
def _(g):
    case = Case("PositionwiseFeedForward(d_model=4, d_ff=8, dropout=0.0, activation='tanh')",
                init=(4, 8, 0.0, "tanh"), inspect=True)
    return raises(case, "ValueError", "PositionwiseFeedForward(4, 8, activation='tanh') should raise ValueError (only "
                  "'relu' and 'gelu' are allowed), but it made a module.",
                  "For activation='tanh', PositionwiseFeedForward")


PositionwiseFeedForward.prop("gradients reach x and both layers",
                             lambda g: gradients_flow(_ffn_case(g, randn(g, 2, 3, 4), 8),
                                                      {"args.0": "x", "params.linear1.weight": "linear1.weight",
                                                       "params.linear2.weight": "linear2.weight",
                                                       "params.linear1.bias": "linear1.bias"}))


def _with_activation(ref, activation):
    return with_attributes(ref.PositionwiseFeedForward, lambda self: {"activation": activation})


@PositionwiseFeedForward.mistake("there is no activation between linear1 and linear2. Without it the two layers "
                                 "collapse into a single linear map.")
def no_activation(ref):
    return _with_activation(ref, lambda h: h)


@PositionwiseFeedForward.mistake("the `activation` argument is ignored: with activation='gelu' use GELU, not ReLU.")
def always_relu(ref):
    return _with_activation(ref, F.relu)


@PositionwiseFeedForward.mistake("GELU uses the tanh approximation. Use the exact GELU: F.gelu(h) or nn.GELU() "
                                 "(the default, approximate='none').")
def tanh_gelu(ref):
    def tanh_if_gelu(self):
        return {"activation": lambda h: F.gelu(h, approximate="tanh")} if self.activation is F.gelu else {}
    return with_attributes(ref.PositionwiseFeedForward, tanh_if_gelu)


@PositionwiseFeedForward.mistake("an activation is also applied after linear2. The network's output is linear2's "
                                 "output as it is: the residual connection adds it to x.")
def activation_on_output(ref):
    return with_output(ref.PositionwiseFeedForward, lambda self, out, x: self.activation(out))


@PositionwiseFeedForward.mistake("the network adds its input to its output (x + ...). The residual belongs to the "
                                 "sublayer connection around the network, not inside it.")
def residual_inside(ref):
    return with_output(ref.PositionwiseFeedForward, lambda self, out, x: x + out)


dropout_in_eval(PositionwiseFeedForward)


@PositionwiseFeedForward.mistake("an unknown activation does not raise", expect="should raise ValueError (only 'relu' and")
def accepts_any_activation(ref):
    class Wrong(ref.PositionwiseFeedForward):
        def __init__(self, d_model, d_ff, dropout=0.0, activation="relu"):
            super().__init__(d_model, d_ff, dropout, activation if activation in ("relu", "gelu") else "relu")
    return Wrong


lent_component(PositionwiseFeedForward, components.PositionwiseFeedForward, "feed-forward network")


# ------------------------------------------------------------------------ SublayerConnection
class _WithSublayer(nn.Module):
    """The sublayer is a function, which a stored case cannot hold: a case gives a matrix W instead,
    and the check calls the student's module with the sublayer ``h -> tanh(h @ W)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        return self.model(x, lambda h: torch.tanh(h @ W))


SublayerConnection = Exercise("SublayerConnection", ASSIGNMENT, call=Module(wrap=_WithSublayer), points=(2, 2), difficulty=2, minutes=25, task="Add & Norm around any `sublayer` function, post-norm or pre-norm, with attribute `norm`")


def _sublayer_case(g, x, norm_first, dropout=None, W=None, note=""):
    d = x.shape[-1]
    W = randn(g, d, d, scale=1.5 / math.sqrt(d)) if W is None else W
    init = (d, 0.0 if dropout is None else dropout, norm_first)
    drop = f", dropout={dropout}" if dropout is not None else ""
    label = (f"SublayerConnection(d_model={d}{drop}, norm_first={norm_first}) on {shapes(x=x)}, "
             f"with sublayer(h) = tanh(h @ W), W {tuple(W.shape)}{note}")
    return Case(label, (x, W), init=init, state=_norm_state(g, d, "norm."))


@SublayerConnection.cases
def _(g, hidden):
    if not hidden:
        return [_sublayer_case(g, randn(g, 2, 3, 6), False), _sublayer_case(g, randn(g, 2, 3, 6), True),
                _sublayer_case(g, randn(g, 1, 4, 8, scale=2), True)]
    return [_sublayer_case(g, randn(g, 3, 5, 16), False), _sublayer_case(g, randn(g, 3, 5, 16), True),
            _sublayer_case(g, randn(g, 2, 1, 8), True, note=" (length 1)"),
            _sublayer_case(g, randn(g, 4, 6, 12, scale=3) + 1, False),
            _sublayer_case(g, transposed(g, 2, 7, 10), True, note=" (non-contiguous x)")]


@SublayerConnection.prop("`norm` is nn.LayerNorm(d_model)")
def _(g):
    def judge(results, dtype):
        norm = results[0].structure.get("modules", {}).get("norm")
        if norm is None or norm["type"] != "LayerNorm":
            return f"SublayerConnection(6).norm should be an nn.LayerNorm, but it is {norm['type'] if norm else 'missing'}."
        if not norm["repr"].startswith("(6,), eps=1e-05, elementwise_affine=True"):
            return f"SublayerConnection(6).norm should be nn.LayerNorm(6), but it is LayerNorm({norm['repr']})."
        return None
    return [Case("SublayerConnection(d_model=6)", init=(6,), inspect=True)], judge


@SublayerConnection.prop("pre-norm keeps an identity path: when the sublayer outputs 0, the output is x itself")
def _(g):
    x = randn(g, 2, 4, 6)
    case = _sublayer_case(g, x, True, W=torch.zeros(6, 6, dtype=torch.float64), note=" (so the sublayer outputs 0)")

    def judge(results, dtype):
        if not close(results[0].output, x, dtype):
            return ("With norm_first=True and a sublayer that outputs 0, the output should be x itself (x + 0): "
                    "in pre-norm only the sublayer's input is normalised, the residual path carries x unchanged.")
        return None
    return [case], judge


@SublayerConnection.prop("dropout acts on the sublayer's output: with dropout=1.0 in training mode only the residual is left")
def _(g):
    x = randn(g, 2, 3, 6)
    pre = _sublayer_case(g, x, True, dropout=1.0, note=", in training mode")
    post = _sublayer_case(g, x, False, dropout=1.0, note=", in training mode")
    weight, bias = post.state["norm.weight"], post.state["norm.bias"]

    def judge(results, dtype):
        if not close(results[0].output, x, dtype):
            return ("With norm_first=True and dropout=1.0 in training mode, the dropped sublayer output leaves "
                    "x + 0 = x, but your output is not x. Apply the dropout to the sublayer's output only.")
        centred = x - x.mean(-1, keepdim=True)
        expected = centred / (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * weight + bias
        if not close(results[1].output, expected, dtype):
            return ("With norm_first=False and dropout=1.0 in training mode, the output should be norm(x + 0) = "
                    "norm(x), but it is not. Apply the dropout to the sublayer's output only.")
        return None
    return [pre, post], judge


SublayerConnection.prop("in eval mode dropout is off: with dropout=0.5 the output equals the output without dropout",
                        lambda g: dropout_off_in_eval(_sublayer_case(g, randn(g, 2, 3, 6), False), 1,
                                                      "SublayerConnection"))


SublayerConnection.prop("gradients reach x, the sublayer and norm",
                        lambda g: gradients_flow(_sublayer_case(g, randn(g, 2, 3, 4), False),
                                                 {"args.0": "x", "args.1": "the sublayer's weight W",
                                                  "params.model.norm.weight": "norm.weight",
                                                  "params.model.norm.bias": "norm.bias"}))


def _with_norm_first(ref, choose):
    return with_attributes(ref.SublayerConnection, lambda self: {"norm_first": choose(self.norm_first)})


@SublayerConnection.mistake("the residual is missing: the sublayer's output is not added to x (the Add of Add & Norm "
                            "is x + sublayer(...)).")
def no_residual(ref):
    return with_forward(ref.SublayerConnection, lambda self, right, x, sublayer: right(x, lambda h: sublayer(h) - h))


@SublayerConnection.mistake("`norm_first` is ignored: with norm_first=True normalise the sublayer's input, "
                            "x + sublayer(norm(x)), instead of the sum.")
def always_post_norm(ref):
    return _with_norm_first(ref, lambda norm_first: False)


@SublayerConnection.mistake("the two orders are swapped: norm_first=True means pre-norm, x + sublayer(norm(x)), "
                            "and norm_first=False means post-norm, norm(x + sublayer(x)).")
def orders_swapped(ref):
    return _with_norm_first(ref, lambda norm_first: not norm_first)


@SublayerConnection.mistake("in pre-norm the residual adds norm(x) instead of x. Only the sublayer's input is "
                            "normalised: x + sublayer(norm(x)).")
def pre_norm_adds_normalised_x(ref):
    return with_output(ref.SublayerConnection, lambda self, out, x, sublayer: out - x + self.norm(x) if self.norm_first
                       else out)


@SublayerConnection.mistake("in pre-norm the sum is normalised again at the end. Pre-norm returns "
                            "x + sublayer(norm(x)) as it is.")
def pre_norm_normalises_the_sum(ref):
    return with_output(ref.SublayerConnection, lambda self, out, x, sublayer: self.norm(out) if self.norm_first else out)


@SublayerConnection.mistake("in post-norm only the sublayer's output is normalised before the Add. Post-norm "
                            "normalises the sum: norm(x + sublayer(x)).")
def post_norm_normalises_the_branch(ref):
    class Wrong(ref.SublayerConnection):
        def forward(self, x, sublayer):
            if self.norm_first:
                return super().forward(x, sublayer)
            return x + self.norm(sublayer(x))
    return Wrong


dropout_in_eval(SublayerConnection)
