"""Chapter 4: softmax, attention scores, scaled dot-product attention, a self-attention module.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import components
from .. import forbidden as capability
from ..calling import MODULE
from ..cases import (causal, close, gradients_flow, gradients_reach, has_linear_layers, linear_weight, mask_ignored,
                     projection_swapped, randn, random_mask, scores_not_scaled, scores_scaled, shapes, transposed,
                     uses_multihead_attention, weights_not_transposed)
from ..spec import Case, Exercise

ASSIGNMENT = "ch04_scaled_dot_product"
SDPA_WHY = "the point is to build attention from its parts"


# --------------------------------------------------------------------------- softmax
softmax = Exercise(
    "softmax", ASSIGNMENT,
    forbidden=(capability.SOFTMAX, capability.SCALED_DOT_PRODUCT_ATTENTION),
    why_forbidden="write softmax from exp, max and sum",
    points=(1, 2), difficulty=2, minutes=20,
    task="a numerically stable softmax along `dim`; no overflow for scores as large as $10^4$",
)


@softmax.cases
def _(g, hidden):
    if not hidden:
        x1, x2, x3 = randn(g, 4, 6), randn(g, 2, 3, 5), randn(g, 3, 4)
        big = randn(g, 2, 5, scale=1e4)
        return [
            Case(shapes(x=x1), (x1,)),
            Case(shapes(x=x2, dim=1), (x2,), {"dim": 1}),
            Case(shapes(x=x3, dim=0), (x3,), {"dim": 0}),
            Case(f"{shapes(x=big)} with entries near 1e4", (big,)),
        ]
    x = randn(g, 3, 4, 7, scale=3)
    wide = randn(g, 2, 9, scale=1e4)
    with_inf = randn(g, 3, 6).index_fill(-1, torch.tensor([1, 4]), float("-inf"))
    return [
        Case(shapes(x=x, dim=d), (x,), {"dim": d}) for d in (0, 1, 2, -1)
    ] + [
        Case(f"{shapes(x=-wide)} with entries near -1e4", (-wide,)),
        Case(f"{shapes(x=wide, dim=0)} with entries near 1e4", (wide,), {"dim": 0}),
        Case(f"{shapes(x=with_inf)} with some -inf entries", (with_inf,)),
        Case("x of shape (5, 1) (a single entry per row)", (randn(g, 5, 1),)),
        Case("a non-contiguous x of shape (4, 6)", (transposed(g, 4, 6),)),
    ]


@softmax.prop("sums to 1 along dim")
def _(g):
    xs = {dim: randn(g, 3, 4, 5, scale=4) for dim in (0, 1, -1)}

    def judge(results, dtype):
        for dim, result in zip(xs, results):
            total = result.output.double().sum(dim) if isinstance(result.output, torch.Tensor) else None
            if total is None or not torch.allclose(total, torch.ones_like(total), atol=1e-5):
                spread = f"range from {total.min().item():.4g} to {total.max().item():.4g}" if total is not None else "are missing"
                return f"softmax(x, dim={dim}) should sum to 1 along dim {dim}, but the sums {spread}."
        return None
    return [Case(shapes(x=x, dim=dim), (x,), {"dim": dim}) for dim, x in xs.items()], judge


@softmax.prop("gradients flow back to the input")
def _(g):
    x = randn(g, 2, 5)
    return [Case(shapes(x=x), (x,), grad=True)], gradients_reach({"args.0": "x"})


@softmax.mistake("exp() overflows for large inputs. Subtract the maximum along `dim` before exp: "
                 "softmax(x) = softmax(x - max).")
def naive_exp(ref):
    return lambda x, dim=-1: torch.exp(x) / torch.exp(x).sum(dim, keepdim=True)


@softmax.mistake("the `dim` argument is ignored: the softmax is always taken over the last dimension.")
def ignores_dim(ref):
    return lambda x, dim=-1: ref.softmax(x, -1)


@softmax.mistake("the sum runs over all entries instead of along `dim` (sum along dim with keepdim=True).")
def sums_everything(ref):
    return lambda x, dim=-1: ref.softmax(x.flatten(), 0).reshape(x.shape)


@softmax.mistake("exp() is missing: the result is x / sum(x) instead of exp(x) / sum(exp(x)).")
def no_exp(ref):
    return lambda x, dim=-1: x / x.sum(dim, keepdim=True)


@softmax.mistake("calls the built-in softmax", expect="uses torch.softmax")
def builtin(ref):
    return lambda x, dim=-1: torch.softmax(x, dim)


# ------------------------------------------------------------------- attention_scores
attention_scores = Exercise(
    "attention_scores", ASSIGNMENT,
    forbidden=(capability.SCALED_DOT_PRODUCT_ATTENTION,), why_forbidden=SDPA_WHY,
    points=(1, 1), difficulty=1, minutes=15,
    task=r"`q (..., T_q, d_k)`, `k (..., T_k, d_k)` → scores $QK^\top/\sqrt{d_k}$ of shape `(..., T_q, T_k)`",
)


@attention_scores.cases
def _(g, hidden):
    if not hidden:
        pairs = [(randn(g, 3, 4), randn(g, 5, 4)), (randn(g, 2, 3, 4), randn(g, 2, 5, 4)),
                 (randn(g, 2, 4, 8), randn(g, 2, 4, 8)), (randn(g, 1, 2, 3, 6), randn(g, 1, 2, 7, 6))]
        return [Case(shapes(q=q, k=k), (q, k)) for q, k in pairs]
    pairs = [(randn(g, 4, 6, 16), randn(g, 4, 9, 16)), (randn(g, 2, 1, 5), randn(g, 2, 7, 5)),
             (randn(g, 3, 2, 4, 1), randn(g, 3, 2, 4, 1)), (randn(g, 2, 5, 64), randn(g, 2, 5, 64)),
             (randn(g, 2, 3, 7), transposed(g, 2, 6, 7))]
    return [Case(shapes(q=q, k=k) + (" (non-contiguous k)" if not k.is_contiguous() else ""), (q, k))
            for q, k in pairs]


@attention_scores.prop("gradients flow back to q and k")
def _(g):
    q, k = randn(g, 2, 3, 4), randn(g, 2, 5, 4)
    return [Case(shapes(q=q, k=k), (q, k), grad=True)], gradients_reach({"args.0": "q", "args.1": "k"})


@attention_scores.mistake("the scores are not divided by sqrt(d_k).")
def no_scaling(ref):
    return lambda q, k: ref.attention_scores(q * math.sqrt(q.shape[-1]), k)


@attention_scores.mistake("the scores are divided by d_k instead of sqrt(d_k).")
def divides_by_d_k(ref):
    return lambda q, k: ref.attention_scores(q / math.sqrt(q.shape[-1]), k)


@attention_scores.mistake("the scores are divided by sqrt(T_k), the number of keys, instead of sqrt(d_k).")
def divides_by_length(ref):
    return lambda q, k: ref.attention_scores(q * math.sqrt(q.shape[-1] / k.shape[-2]), k)


@attention_scores.mistake("the scores are multiplied by sqrt(d_k) instead of divided by it.")
def multiplies(ref):
    return lambda q, k: ref.attention_scores(q * q.shape[-1], k)


@attention_scores.mistake("q and k are swapped: this is k q^T, of shape (..., T_k, T_q), not q k^T.")
def swapped(ref):
    return lambda q, k: ref.attention_scores(k, q)


# -------------------------------------------------------------- scaled_dot_product_attention
scaled_dot_product_attention = Exercise(
    "scaled_dot_product_attention", ASSIGNMENT, outputs=("out", "weights"),
    forbidden=(capability.SCALED_DOT_PRODUCT_ATTENTION, capability.MULTI_HEAD_ATTENTION,
               components.ScaledDotProductAttention), why_forbidden=SDPA_WHY,
    points=(2, 3), difficulty=3, minutes=30,
    task="`(out, weights)`: `v (..., T_k, d_v)`, `out (..., T_q, d_v)`, `weights (..., T_q, T_k)`; masked scores excluded before the softmax",
)


@scaled_dot_product_attention.cases
def _(g, hidden):
    def case(q, k, v, mask=None, note=""):
        label = shapes(q=q, k=k, v=v) + (f", mask {tuple(mask.shape)}" if mask is not None else ", no mask") + note
        return Case(label, (q, k, v), {} if mask is None else {"mask": mask})

    if not hidden:
        return [
            case(randn(g, 2, 3, 4), randn(g, 2, 5, 4), randn(g, 2, 5, 6)),
            case(randn(g, 1, 4, 4), randn(g, 1, 4, 4), randn(g, 1, 4, 3), causal(4), " (causal)"),
            case(randn(g, 2, 3, 4), randn(g, 2, 5, 4), randn(g, 2, 5, 2), random_mask(g, 2, 1, 5)),
            case(randn(g, 2, 2, 3, 8), randn(g, 2, 2, 6, 8), randn(g, 2, 2, 6, 5), random_mask(g, 2, 2, 3, 6)),
        ]
    return [
        case(randn(g, 3, 5, 16), randn(g, 3, 11, 16), randn(g, 3, 11, 7)),
        case(randn(g, 2, 6, 8), randn(g, 2, 6, 8), randn(g, 2, 6, 8), causal(6), " (causal)"),
        case(randn(g, 4, 1, 5), randn(g, 4, 1, 5), randn(g, 4, 1, 3), note=" (length 1)"),
        case(randn(g, 2, 3, 4, 6), randn(g, 2, 3, 9, 6), randn(g, 2, 3, 9, 2), random_mask(g, 2, 1, 4, 9)),
        case(randn(g, 2, 4, 5), transposed(g, 2, 7, 5), transposed(g, 2, 7, 3), random_mask(g, 7),
             " (non-contiguous k and v, mask over keys only)"),
    ]


@scaled_dot_product_attention.prop("the weights' rows sum to 1 and masked weights are exactly 0")
def _(g):
    q, k, v = randn(g, 2, 4, 8), randn(g, 2, 6, 8), randn(g, 2, 6, 3)
    mask = random_mask(g, 2, 4, 6)

    def judge(results, dtype):
        out, weights = results[0].output
        weights = weights.detach().cpu()
        sums = weights.double().sum(-1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
            return (f"Each row of `weights` should sum to 1 (softmax over the keys, the last axis); "
                    f"the row sums range from {sums.min().item():.4g} to {sums.max().item():.4g}.")
        leaked = weights[~mask.expand_as(weights)]
        if (leaked != 0).any():
            return (f"Where the mask is False the weight must be exactly 0, but the largest such weight is "
                    f"{leaked.abs().max().item():.3g}. Fill masked scores with -inf before the softmax.")
        if not close(out, weights.double() @ v, dtype):
            return "`out` should be the weighted sum of the values, weights @ v, with the same `weights` you return."
        return None
    return [Case(shapes(q=q, k=k, v=v, mask=mask), (q, k, v), {"mask": mask})], judge


@scaled_dot_product_attention.prop("gradients flow back to q, k and v")
def _(g):
    q, k, v = (randn(g, 1, 3, 4) for _ in range(3))
    return [Case(shapes(q=q, k=k, v=v), (q, k, v), grad=True)], gradients_reach(
        {"args.0": "q", "args.1": "k", "args.2": "v"})


def _masked_softmax_weights(ref, q, k, mask, fill=float("-inf"), dim=-1):
    scores = ref.attention_scores(q, k)
    if mask is not None:
        scores = scores.masked_fill(~mask, fill)
    return ref.softmax(scores, dim=dim)


@scaled_dot_product_attention.mistake("the scores are not divided by sqrt(d_k).")
def no_scaling(ref):
    return lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q * math.sqrt(q.shape[-1]), k, v, mask)


@scaled_dot_product_attention.mistake("the scores are divided by sqrt(d_v), the size of the values, instead of sqrt(d_k).")
def scales_by_d_v(ref):
    return lambda q, k, v, mask=None: ref.scaled_dot_product_attention(
        q * math.sqrt(q.shape[-1] / v.shape[-1]), k, v, mask)


@scaled_dot_product_attention.mistake("the softmax runs over the queries (axis -2) instead of over the keys (the last axis).")
def softmax_over_queries(ref):
    def wrong(q, k, v, mask=None):
        weights = _masked_softmax_weights(ref, q, k, mask, dim=-2)
        return weights @ v, weights
    return wrong


@scaled_dot_product_attention.mistake("the mask is applied after the softmax, so the remaining weights no longer sum to 1. "
                                      "Mask the scores (with -inf) before the softmax.")
def mask_after_softmax(ref):
    def wrong(q, k, v, mask=None):
        weights = _masked_softmax_weights(ref, q, k, None)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        return weights @ v, weights
    return wrong


@scaled_dot_product_attention.mistake("the mask is inverted: in this course True means 'may attend' and False means 'masked out'.")
def inverted_mask(ref):
    return lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)


@scaled_dot_product_attention.mistake("masked scores are set to 0 instead of -inf, so masked keys still get weight.")
def fills_with_zero(ref):
    def wrong(q, k, v, mask=None):
        weights = _masked_softmax_weights(ref, q, k, mask, fill=0.0)
        return weights @ v, weights
    return wrong


@scaled_dot_product_attention.mistake("the mask is ignored.")
def ignores_mask(ref):
    return lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q, k, v)


@scaled_dot_product_attention.mistake("calls the built-in attention", expect="uses torch.nn.functional.scaled_dot_product_attention")
def builtin(ref):
    def wrong(q, k, v, mask=None):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out, ref.scaled_dot_product_attention(q, k, v, mask)[1]
    return wrong


# ------------------------------------------------------------------------ SelfAttention
SelfAttention = Exercise(
    "SelfAttention", ASSIGNMENT, outputs=("out", "weights"), call=MODULE,
    forbidden=(capability.SCALED_DOT_PRODUCT_ATTENTION, capability.MULTI_HEAD_ATTENTION,
               components.ScaledDotProductAttention), why_forbidden=SDPA_WHY,
    points=(2, 2), difficulty=3, minutes=25,
    task="a module with attributes `W_q`, `W_k`, `W_v` that makes Q, K and V from one input `x (B, T, d_model)` and attends: `(out, weights)`",
)


def _self_attention_case(g, batch, length, d_model, d_k, mask=None, note=""):
    x = randn(g, batch, length, d_model)
    state = {f"W_{n}.weight": linear_weight(g, d_k, d_model) for n in "qkv"}
    label = f"SelfAttention(d_model={d_model}, d_k={d_k}) on {shapes(x=x)}" + (
        f", mask {tuple(mask.shape)}" if mask is not None else "") + note
    return Case(label, (x,), {} if mask is None else {"mask": mask}, init=(d_model, d_k), state=state)


@SelfAttention.cases
def _(g, hidden):
    if not hidden:
        # The square case (d_model == d_k) comes first: it is the one where x @ W.weight runs and can be named.
        return [_self_attention_case(g, 1, 4, 4, 4, causal(4), " (causal)"), _self_attention_case(g, 2, 5, 6, 4),
                _self_attention_case(g, 2, 3, 8, 2, random_mask(g, 2, 1, 3))]
    return [_self_attention_case(g, 4, 5, 5, 5, random_mask(g, 4, 5, 5)), _self_attention_case(g, 3, 7, 12, 5),
            _self_attention_case(g, 2, 1, 6, 3, note=" (length 1)"),
            _self_attention_case(g, 2, 6, 10, 4, causal(6), " (causal)")]


SelfAttention.prop("W_q, W_k and W_v are nn.Linear(d_model, d_k, bias=False)",
                   lambda g: has_linear_layers(
                       Case("SelfAttention(d_model=6, d_k=4)", init=(6, 4), inspect=True), "SelfAttention(6, 4)",
                       dict.fromkeys(("W_q", "W_k", "W_v"), "in_features=6, out_features=4, bias=False")))


@SelfAttention.prop("permuting the input tokens permutes the output the same way")
def _(g):
    case = _self_attention_case(g, 1, 5, 6, 4)
    perm = torch.randperm(5, generator=g)
    shuffled = Case(case.label + ", tokens permuted", (case.args[0][:, perm],), init=case.init, state=case.state)

    def judge(results, dtype):
        (out, _), (out_perm, _) = results[0].output, results[1].output
        if not close(out_perm, out[:, perm.to(out.device)], dtype):
            return ("Without a mask, self-attention treats the tokens as a set: permuting the input rows should "
                    "permute the output rows the same way, but yours does not. Do not mix information across "
                    "positions other than through the attention weights.")
        return None
    return [case, shuffled], judge


SelfAttention.prop("gradients reach the input and W_q, W_k, W_v",
                   lambda g: gradients_flow(_self_attention_case(g, 2, 3, 4, 2),
                                            {"args.0": "x", "params.W_q.weight": "W_q", "params.W_k.weight": "W_k",
                                             "params.W_v.weight": "W_v"}))


scores_not_scaled(SelfAttention, "the scores are not divided by sqrt(d_k).")


@SelfAttention.mistake("the scores are divided by sqrt(d_model) instead of sqrt(d_k).")
def scales_by_d_model(ref):
    return scores_scaled(ref.SelfAttention, lambda p: math.sqrt(p["W_q.weight"].shape[0] / p["W_q.weight"].shape[1]))


projection_swapped(SelfAttention, "W_k", "W_q")
projection_swapped(SelfAttention, "W_q", "W_v")
weights_not_transposed(SelfAttention, "x is multiplied by the weight matrices directly (x @ W.weight); an nn.Linear "
                                      "computes x @ W.weight.T.")


mask_ignored(SelfAttention)
uses_multihead_attention(SelfAttention, lambda module: module.W_q.out_features)
