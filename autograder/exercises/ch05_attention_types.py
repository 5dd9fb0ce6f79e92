"""Chapter 5: additive (Bahdanau) attention, hard attention, a local window mask, cross-attention.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import forbidden as capability
from ..calling import MODULE
from ..compare import describe
from ..cases import (close, gradients_flow, has_linear_layers, linear_weight, mask_ignored, projection_swapped, randn,
                     random_mask, scores_not_scaled, scores_scaled, shapes, transposed, uses_multihead_attention,
                     weights_not_transposed, with_forward)
from ..spec import Case, Exercise

ASSIGNMENT = "ch05_attention_types"
ATTENTION_WHY = "the point is to wire queries, keys and values yourself"


def _row_sums_are_one(weights: torch.Tensor, name: str) -> str | None:
    sums = weights.detach().cpu().double().sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
        return (f"Each row of `weights` from {name} should sum to 1 (a softmax over the keys, the last axis); "
                f"the row sums range from {sums.min().item():.4g} to {sums.max().item():.4g}.")
    return None


# ------------------------------------------------------------------------ additive_attention
additive_attention = Exercise("additive_attention", ASSIGNMENT, outputs=("out", "weights"),
                              points=(2, 2), difficulty=3, minutes=25,
                              task=r"`(out, weights)` with scores $\tanh(qW_q + kW_k)\cdot w_v$; `q (B, T_q, d_q)`, `k (B, T_k, d_k)`, `v (B, T_k, d_v)`")


def _additive_case(g, batch, t_q, t_k, d_q, d_k, d_v, hidden, note="", leading=()):
    q, k, v = randn(g, *leading, batch, t_q, d_q), randn(g, *leading, batch, t_k, d_k), randn(g, *leading, batch, t_k, d_v)
    W_q, W_k = randn(g, d_q, hidden, scale=d_q ** -0.5), randn(g, d_k, hidden, scale=d_k ** -0.5)
    w_v = randn(g, hidden)
    return Case(shapes(q=q, k=k, v=v, W_q=W_q, W_k=W_k, w_v=w_v) + note, (q, k, v, W_q, W_k, w_v))


@additive_attention.cases
def _(g, hidden):
    if not hidden:
        # q and k of the same size come first: there a swap of W_q and W_k runs and can be named.
        return [_additive_case(g, 1, 3, 4, 4, 4, 2, 5), _additive_case(g, 2, 3, 5, 6, 4, 3, 8),
                _additive_case(g, 2, 1, 6, 3, 5, 4, 2, " (one query)")]
    transposed_k = _additive_case(g, 2, 4, 7, 5, 6, 3, 4)
    q, k, v, W_q, W_k, w_v = transposed_k.args
    k = transposed(g, 2, 7, 6)
    return [
        _additive_case(g, 3, 5, 5, 8, 8, 8, 16),
        _additive_case(g, 4, 6, 9, 10, 7, 5, 12),
        _additive_case(g, 2, 5, 1, 4, 3, 6, 3, " (one key)"),
        _additive_case(g, 1, 1, 1, 2, 2, 1, 1, " (one query, one key, hidden size 1)"),
        Case(shapes(q=q, k=k, v=v, W_q=W_q, W_k=W_k, w_v=w_v) + " (non-contiguous k)", (q, k, v, W_q, W_k, w_v)),
    ]


@additive_attention.prop("the weights' rows sum to 1 and out is weights @ v")
def _(g):
    case = _additive_case(g, 2, 4, 6, 5, 3, 2, 7)
    v = case.args[2]

    def judge(results, dtype):
        out, weights = results[0].output
        message = _row_sums_are_one(weights, "additive_attention")
        if message:
            return message
        if not close(out, weights.detach().cpu().double() @ v, dtype):
            return "`out` should be the weighted sum of the values, weights @ v, with the same `weights` you return."
        return None
    return [case], judge


additive_attention.prop("gradients reach q, k, v, W_q, W_k and w_v",
                        lambda g: gradients_flow(_additive_case(g, 1, 2, 3, 4, 3, 2, 5),
                                                 {"args.0": "q", "args.1": "k", "args.2": "v", "args.3": "W_q",
                                                  "args.4": "W_k", "args.5": "w_v"}))


@additive_attention.mistake("the tanh is missing. Without it the score is (q W_q) . w_v + (k W_k) . w_v, and the "
                            "query's part cancels in the softmax: every query gets the same weights.")
def no_tanh(ref):
    tiny = 1e-5  # tanh(tiny * s) / tiny == s to within tiny**2: the reference with its tanh made linear

    def wrong(q, k, v, W_q, W_k, w_v):
        return ref.additive_attention(q, k, v, W_q * tiny, W_k * tiny, w_v / tiny)
    return wrong


@additive_attention.mistake("the query has no effect on the weights: apply tanh to the sum q W_q + k W_k, not to each "
                            "projection separately (a term that depends only on the query cancels in the softmax).")
def tanh_of_each_projection(ref):
    return lambda q, k, v, W_q, W_k, w_v: ref.additive_attention(torch.zeros_like(q), k, v, W_q, W_k, w_v)


@additive_attention.mistake("the softmax runs over the queries (axis -2) instead of over the keys (the last axis): "
                            "each row of `weights`, one query, must sum to 1.")
def softmax_over_queries(ref):
    def wrong(q, k, v, W_q, W_k, w_v):
        # The same scores with the roles of queries and keys exchanged, softmaxed over their last axis, are the
        # scores softmaxed over the queries (q stands in for the values, which are not used).
        weights = ref.additive_attention(k, q, q, W_k, W_q, w_v)[1].transpose(-1, -2)
        return weights @ v, weights
    return wrong


@additive_attention.mistake("W_q and W_k are swapped: the queries go through W_q and the keys through W_k.")
def swapped_projections(ref):
    return lambda q, k, v, W_q, W_k, w_v: ref.additive_attention(q, k, v, W_k, W_q, w_v)


@additive_attention.mistake("the scores are divided by sqrt(h). Additive attention has no scaling: "
                            "the division by sqrt(d) belongs to dot-product attention.")
def scaled_like_dot_product(ref):
    return lambda q, k, v, W_q, W_k, w_v: ref.additive_attention(q, k, v, W_q, W_k, w_v / math.sqrt(w_v.shape[-1]))


@additive_attention.mistake("w_v is not used: the tanh features are summed instead of dotted with w_v.")
def sums_instead_of_w_v(ref):
    return lambda q, k, v, W_q, W_k, w_v: ref.additive_attention(q, k, v, W_q, W_k, torch.ones_like(w_v))


# ---------------------------------------------------------------------------- hard_attention
hard_attention = Exercise("hard_attention", ASSIGNMENT, outputs=("out", "weights"),
                          points=(1, 2), difficulty=2, minutes=20,
                          task="`(out, weights)` with one-hot weights at the argmax of the scaled scores (the first index on ties)")


def _small_integers(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Whole numbers from -2 to 2 (as float64): the scores are exact in every dtype, so ties are real ties."""
    return torch.randint(-2, 3, shape, generator=g).to(torch.float64)


def _hard_case(g, shape_q, t_k, d_v, note=""):
    *lead, t_q, d = shape_q
    q, k, v = _small_integers(g, *lead, t_q, d), _small_integers(g, *lead, t_k, d), randn(g, *lead, t_k, d_v)
    return Case(shapes(q=q, k=k, v=v) + note, (q, k, v))


def _tied_case(g, batch, t_q, t_k, d):
    """Keys 1 and 3 are equal and are the best match of query 0: a tie that the first index must win."""
    q = _small_integers(g, batch, t_q, d)
    q[:, 0] = q[:, 0].abs() + 1  # nonzero entries, so that 2 q . q beats every key with entries in -1..1
    k = torch.randint(-1, 2, (batch, t_k, d), generator=g).to(torch.float64)
    k[:, 1] = k[:, 3] = 2 * q[:, 0]
    v = randn(g, batch, t_k, d)
    return Case(shapes(q=q, k=k, v=v) + " (keys 1 and 3 tie for query 0)", (q, k, v))


@hard_attention.cases
def _(g, hidden):
    if not hidden:
        return [_tied_case(g, 1, 3, 5, 4), _hard_case(g, (2, 4, 3), 6, 2), _hard_case(g, (2, 2, 3, 5), 4, 3)]
    transposed = _hard_case(g, (3, 5, 4), 6, 3)
    q, k, v = transposed.args
    return [
        _tied_case(g, 2, 4, 6, 5),
        _hard_case(g, (4, 7, 8), 9, 5),
        _hard_case(g, (2, 3, 4, 6), 5, 2, " (extra leading axis)"),
        _hard_case(g, (3, 1, 4), 1, 2, " (length 1)"),
        _hard_case(g, (2, 6, 2), 3, 7),
        Case(shapes(q=q, k=k, v=v) + " (non-contiguous v)", (q, k, v.transpose(-1, -2).contiguous().transpose(-1, -2))),
    ]


@hard_attention.prop("each row of weights is one-hot and out is the chosen value")
def _(g):
    case = _hard_case(g, (2, 5, 4), 7, 3)
    v = case.args[2]

    def judge(results, dtype):
        out, weights = results[0].output
        weights = weights.detach().cpu().double()
        ones, zeros = (weights == 1).sum(-1), (weights == 0).sum(-1)
        if not ((ones == 1) & (zeros == weights.shape[-1] - 1)).all():
            return ("Each row of `weights` should be one-hot: a single 1.0 at the chosen key and exactly 0.0 "
                    "everywhere else.")
        if not close(out, weights @ v, dtype):
            return "`out` should be the value of the chosen key in each row, that is weights @ v."
        return None
    return [case], judge


hard_attention.prop("gradients reach v", lambda g: gradients_flow(_hard_case(g, (1, 3, 4), 5, 2), {"args.2": "v"}))


@hard_attention.mistake("on a tie the last best key is chosen; argmax must keep the first one (torch.argmax does).")
def last_on_ties(ref):
    def wrong(q, k, v):
        out, weights = ref.hard_attention(q, k.flip(-2), v.flip(-2))
        return out, weights.flip(-1)
    return wrong


@hard_attention.mistake("the key with the smallest score is chosen (argmin) instead of the largest (argmax).")
def argmin(ref):
    return lambda q, k, v: ref.hard_attention(-q, k, v)


@hard_attention.mistake("the argmax runs over the queries (axis -2) instead of over the keys (the last axis).")
def argmax_over_queries(ref):
    def wrong(q, k, v):
        _, weights = ref.hard_attention(k, q, q)
        weights = weights.transpose(-2, -1)
        return weights @ v, weights
    return wrong


@hard_attention.mistake("these are the soft (softmax) weights: hard attention keeps only the best key, with weight 1.")
def soft_weights(ref):
    return lambda q, k, v: ref.attention(q, k, v)


@hard_attention.mistake("`out` holds the chosen key instead of the chosen value.")
def returns_keys(ref):
    def wrong(q, k, v):
        _, weights = ref.hard_attention(q, k, v)
        return weights @ k, weights
    return wrong


# ----------------------------------------------------------------------- local_attention_mask
local_attention_mask = Exercise("local_attention_mask", ASSIGNMENT, dtypes=(None,),
                                points=(1, 1), difficulty=1, minutes=10,
                                task=r"a bool `(T, T)` mask, `True` where $\lvert i - j\rvert \le$ `window`")


@local_attention_mask.cases
def _(g, hidden):
    sizes = [(8, 3), (6, 1), (5, 0), (4, 10)] if not hidden else [(9, 3), (12, 4), (8, 0), (1, 0), (3, 5), (10, 1)]
    return [Case(f"seq_len={t}, window={w}", (t, w)) for t, w in sizes]


@local_attention_mask.prop("the mask is symmetric and every position may attend to itself")
def _(g):
    def judge(results, dtype):
        mask = results[0].output
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (8, 8) or mask.dtype != torch.bool:
            return f"local_attention_mask(8, 2) should be a bool tensor of shape (8, 8), but it is {describe(mask)}."
        mask = mask.cpu()
        if not mask.diagonal().all():
            return "In local_attention_mask(8, 2) every position should be allowed to attend to itself (the diagonal is True)."
        if not torch.equal(mask, mask.T):
            return ("local_attention_mask(8, 2) should be symmetric: if i may see j, then j may see i "
                    "(the window reaches `window` positions on both sides).")
        return None
    return [Case("seq_len=8, window=2", (8, 2))], judge


@local_attention_mask.mistake("the window excludes its edges: use abs(i - j) <= window, not < window.")
def strict(ref):
    return lambda seq_len, window: ref.local_attention_mask(seq_len, window - 1)


@local_attention_mask.mistake("the mask is inverted: True must mark the keys inside the window (may attend).")
def inverted(ref):
    return lambda seq_len, window: ~ref.local_attention_mask(seq_len, window)


@local_attention_mask.mistake("the window only looks back (j <= i); a local window reaches `window` positions on "
                              "both sides.")
def past_only(ref):
    return lambda seq_len, window: ref.local_attention_mask(seq_len, window).tril()


@local_attention_mask.mistake("`window` was taken as the total width of the band; it is the number of neighbours "
                              "on each side, so the band is 2 * window + 1 wide.")
def total_width(ref):
    return lambda seq_len, window: ref.local_attention_mask(seq_len, window // 2)


# ----------------------------------------------------------------------------- CrossAttention
CrossAttention = Exercise(
    "CrossAttention", ASSIGNMENT, outputs=("out", "weights"), call=MODULE,
    forbidden=(capability.SCALED_DOT_PRODUCT_ATTENTION, capability.MULTI_HEAD_ATTENTION), why_forbidden=ATTENTION_WHY,
    points=(2, 2), difficulty=2, minutes=20,
    task="a module with `W_q`, `W_k`, `W_v`: queries from `x`, keys and values from `memory`",
)


def _cross_case(g, batch, t_q, t_k, d_model, d_memory, mask=None, note=""):
    x, memory = randn(g, batch, t_q, d_model), randn(g, batch, t_k, d_memory)
    state = {"W_q.weight": linear_weight(g, d_model, d_model), "W_k.weight": linear_weight(g, d_model, d_memory),
             "W_v.weight": linear_weight(g, d_model, d_memory)}
    label = f"CrossAttention(d_model={d_model}, d_memory={d_memory}) on {shapes(x=x, memory=memory)}" + (
        f", mask {tuple(mask.shape)}" if mask is not None else "") + note
    return Case(label, (x, memory), {} if mask is None else {"mask": mask}, init=(d_model, d_memory), state=state)


@CrossAttention.cases
def _(g, hidden):
    if not hidden:
        # d_model == d_memory and T_q == T_k come first: there every mix-up of x and memory runs and is named.
        # Then d_model == d_memory with T_q != T_k (keys or values from x give the wrong number of columns),
        # then sizes that all differ.
        return [_cross_case(g, 1, 3, 3, 4, 4, random_mask(g, 3, 3)), _cross_case(g, 2, 3, 5, 6, 6),
                _cross_case(g, 2, 3, 5, 6, 4),
                _cross_case(g, 2, 4, 6, 8, 10, random_mask(g, 2, 1, 6), " (a mask over the memory)")]
    transposed = _cross_case(g, 2, 3, 6, 8, 5, note=" (non-contiguous memory)")
    transposed.args = (transposed.args[0], randn(g, 2, 5, 6).transpose(1, 2))  # a (2, 6, 5) view
    return [
        _cross_case(g, 2, 5, 5, 6, 6, random_mask(g, 2, 5, 5)),
        _cross_case(g, 3, 6, 9, 16, 12),
        _cross_case(g, 4, 2, 7, 8, 5, random_mask(g, 4, 1, 7), " (a mask over the memory)"),
        _cross_case(g, 2, 4, 1, 6, 3, note=" (memory of length 1)"),
        _cross_case(g, 2, 1, 5, 4, 7, note=" (one query)"),
        _cross_case(g, 1, 3, 8, 5, 9, random_mask(g, 3, 8)),
        transposed,
    ]


@CrossAttention.prop("W_q is nn.Linear(d_model, d_model), W_k and W_v are nn.Linear(d_memory, d_model), no bias")
def _(g):
    expected = {"W_q": "in_features=6, out_features=6, bias=False", "W_k": "in_features=4, out_features=6, bias=False",
                "W_v": "in_features=4, out_features=6, bias=False"}
    return has_linear_layers(Case("CrossAttention(d_model=6, d_memory=4)", init=(6, 4), inspect=True),
                             "CrossAttention(6, 4)", expected)


@CrossAttention.prop("permuting the memory tokens leaves out unchanged and permutes the weights' columns")
def _(g):
    case = _cross_case(g, 1, 3, 5, 6, 4)
    perm = torch.randperm(5, generator=g)
    shuffled = Case(case.label + ", memory permuted", (case.args[0], case.args[1][:, perm]), init=case.init,
                    state=case.state)

    def judge(results, dtype):
        (out, weights), (out_perm, weights_perm) = results[0].output, results[1].output
        if not close(out_perm, out, dtype):
            return ("The memory is a set of keys and values: shuffling its tokens should leave `out` unchanged, but "
                    "yours changes. Each query should take a weighted sum over all memory tokens.")
        if not close(weights_perm, weights[..., perm.to(weights.device)], dtype):
            return ("Shuffling the memory tokens should shuffle the columns of `weights` the same way: column j "
                    "belongs to memory token j.")
        return None
    return [case, shuffled], judge


CrossAttention.prop("gradients reach x, memory and W_q, W_k, W_v",
                    lambda g: gradients_flow(_cross_case(g, 2, 3, 4, 4, 3),
                                             {"args.0": "x", "args.1": "memory", "params.W_q.weight": "W_q",
                                              "params.W_k.weight": "W_k", "params.W_v.weight": "W_v"}))


@CrossAttention.mistake("the roles are swapped: the queries must come from x, the keys and values from memory.")
def roles_swapped(ref):
    return with_forward(ref.CrossAttention, lambda self, right, x, memory, mask=None: right(memory, x, mask))


class _ReadsFrom(nn.Module):
    """A projection that ignores what it is given and projects ``source`` instead (a mix-up of x and memory)."""

    def __init__(self, layer: nn.Module, source: torch.Tensor):
        super().__init__()
        self.layer, self.source = layer, source

    def forward(self, _):
        return self.layer(self.source)


def _projections_from_x(ref, names: tuple):
    """A wrong CrossAttention: the reference, with the projections ``names`` applied to x instead of memory."""
    class Wrong(ref.CrossAttention):
        def forward(self, x, memory, mask=None):
            layers = {name: getattr(self, name) for name in names}
            for name, layer in layers.items():
                setattr(self, name, _ReadsFrom(layer, x))
            try:
                return super().forward(x, memory, mask)
            finally:
                for name, layer in layers.items():
                    setattr(self, name, layer)
    return Wrong


@CrossAttention.mistake("the keys and the values are made from x: this is self-attention on x. In cross-attention "
                        "only the queries come from x; the keys and values come from memory.")
def keys_and_values_from_x(ref):
    return _projections_from_x(ref, ("W_k", "W_v"))


@CrossAttention.mistake("the keys are made from x: compute k = W_k(memory), like the values.")
def keys_from_x(ref):
    return _projections_from_x(ref, ("W_k",))


@CrossAttention.mistake("the values are made from x: compute v = W_v(memory), like the keys.")
def values_from_x(ref):
    return _projections_from_x(ref, ("W_v",))


scores_not_scaled(CrossAttention, "the scores are not divided by sqrt(d_model), the size of the queries and keys.")


@CrossAttention.mistake("the scores are divided by sqrt(d_memory); the queries and keys have d_model features, so "
                        "divide by sqrt(d_model).")
def scales_by_d_memory(ref):
    return scores_scaled(ref.CrossAttention, lambda p: math.sqrt(p["W_q.weight"].shape[0] / p["W_k.weight"].shape[1]))


projection_swapped(CrossAttention, "W_v", "W_k")
weights_not_transposed(CrossAttention, "the inputs are multiplied by the weight matrices directly (x @ W.weight); "
                                       "an nn.Linear computes x @ W.weight.T.")


mask_ignored(CrossAttention)
uses_multihead_attention(CrossAttention, lambda module: module.W_q.out_features)
