"""Chapter 6: splitting features into heads, merging them back, multi-head attention.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution. ``MultiHeadAttention``
is also compared with ``nn.MultiheadAttention(batch_first=True)`` given the same weights,
by a property whose judge runs the built-in (outside the student's code).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import components
from .. import forbidden as capability
from ..calling import MODULE
from ..compare import describe
from ..cases import (causal, close, gradients_flow, interleaving, linear_layers_problem, linear_weight, mask_ignored,
                     randn, random_mask, shapes, splits_into_heads, transposed, uses_multihead_attention,
                     with_forward, with_parameters)
from ..spec import Case, Exercise

ASSIGNMENT = "ch06_multi_head_attention"
MHA_WHY = "the point is to build multi-head attention from projections, heads and chapter 4's attention"


# ------------------------------------------------------------------------------- split_heads
split_heads = Exercise("split_heads", ASSIGNMENT, points=(1, 1), difficulty=1, minutes=10, task=r"`(B, T, D)` → `(B, h, T, D/h)`; head $j$ takes features $j\,d_\text{head}$ to $(j+1)\,d_\text{head} - 1$")
splits_into_heads(split_heads, non_contiguous=True)


# ------------------------------------------------------------------------------- merge_heads
merge_heads = Exercise("merge_heads", ASSIGNMENT, points=(1, 1), difficulty=1, minutes=10, task="`(B, h, T, d_head)` → `(B, T, h·d_head)`, the inverse of `split_heads`")


@merge_heads.cases
def _(g, hidden):
    sizes = [(1, 2, 4, 2), (2, 3, 5, 4), (2, 4, 3, 1)] if not hidden else [
        (3, 4, 7, 4), (2, 6, 1, 1), (1, 1, 5, 9), (4, 5, 3, 4)]
    cases = [Case(shapes(x=x), (x,)) for x in (randn(g, *size) for size in sizes)]
    if hidden:
        x = transposed(g, 2, 3, 5, 6)
        cases.append(Case(f"a non-contiguous {shapes(x=x)}", (x,)))
    return cases


@merge_heads.prop("head j's features land at positions j*d_head to (j+1)*d_head of every token")
def _(g):
    x = randn(g, 2, 3, 5, 4)

    def judge(results, dtype):
        got = results[0].output
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (2, 5, 12):
            return f"merge_heads(x) with x of shape (2, 3, 5, 4) should be a (2, 5, 12) tensor, got {describe(got)}."
        if not close(got[1, 3, 8:12], x[1, 2, 3], dtype):
            return ("merge_heads(x)[1, 3, 8:12] (batch 1, token 3, the third block of 4 features) should be "
                    "x[1, 2, 3], the features of head 2 for that token, but it is not.")
        return None
    return [Case(shapes(x=x), (x,))], judge


@merge_heads.mistake("the features are merged as '(d_head h)' instead of '(h d_head)': head j's features must "
                     "stay together at positions j*d_head:(j+1)*d_head.")
def interleaved(ref):
    def wrong(x):
        inverse = torch.argsort(interleaving(x.shape[1] * x.shape[-1], x.shape[1], x.device))
        return ref.merge_heads(x)[..., inverse]
    return wrong


@merge_heads.mistake("x was reshaped to (B, T, h * d_head) directly, which mixes tokens and heads. Move the "
                     "head axis after the sequence axis first, then merge (h, d_head).")
def plain_reshape(ref):
    return lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3])


@merge_heads.mistake("the heads are added up; they should be concatenated, giving h * d_head features.")
def summed_heads(ref):
    return lambda x: x.sum(1)


@merge_heads.mistake("the result is (B, h * d_head, T): the sequence axis should come before the features, "
                     "(B, T, h * d_head).")
def transposed_output(ref):
    return lambda x: ref.merge_heads(x).transpose(1, 2)


# ------------------------------------------------------------------------ MultiHeadAttention
MultiHeadAttention = Exercise(
    "MultiHeadAttention", ASSIGNMENT, outputs=("out", "weights"), call=MODULE,
    forbidden=(capability.MULTI_HEAD_ATTENTION, capability.SCALED_DOT_PRODUCT_ATTENTION, components.MultiHeadAttention),
    why_forbidden=MHA_WHY, points=(3, 3), difficulty=3, minutes=45, task="a module with `q_proj`, `k_proj`, `v_proj`, `out_proj`; `forward(query, key, value, mask=None)` → `(out, weights)` with weights `(B, h, T_q, T_k)`; equal to `nn.MultiheadAttention(batch_first=True)` given the same weights",
)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _mha_state(g, d_model: int, bias: bool) -> dict:
    state = {}
    for name in PROJECTIONS:
        state[f"{name}.weight"] = linear_weight(g, d_model, d_model)
        if bias:
            state[f"{name}.bias"] = randn(g, d_model, scale=0.5)
    return state


def _mha_case(g, d_model, n_heads, batch, t_q, t_k, *, bias=True, mask=None, self_attention=False, note=""):
    query = randn(g, batch, t_q, d_model)
    if self_attention:
        key = value = query
        inputs = f"x = query = key = value {tuple(query.shape)}"
    else:
        key, value = randn(g, batch, t_k, d_model), randn(g, batch, t_k, d_model)
        inputs = shapes(query=query, key=key, value=value)
    init = (d_model, n_heads) if bias else (d_model, n_heads, False)
    label = (f"MultiHeadAttention({d_model}, {n_heads}{'' if bias else ', bias=False'}) on {inputs}"
             + (f", mask {tuple(mask.shape)}" if mask is not None else "") + note)
    return Case(label, (query, key, value), {} if mask is None else {"mask": mask}, init=init,
                state=_mha_state(g, d_model, bias))


@MultiHeadAttention.cases
def _(g, hidden):
    if not hidden:
        return [
            _mha_case(g, 8, 2, 2, 3, 5, mask=random_mask(g, 2, 1, 1, 5), note=" (a padding mask over the keys)"),
            _mha_case(g, 12, 3, 1, 4, 4, bias=False, mask=causal(4), self_attention=True, note=" (causal)"),
            _mha_case(g, 8, 4, 2, 2, 6),
            _mha_case(g, 8, 2, 2, 3, 5, mask=random_mask(g, 2, 2, 3, 5), note=" (a different mask per head)"),
        ]
    transposed = _mha_case(g, 6, 3, 2, 9, 4, note=" (non-contiguous query)")
    transposed.args = (randn(g, 2, 6, 9).transpose(1, 2), *transposed.args[1:])  # a (2, 9, 6) view
    return [
        _mha_case(g, 16, 4, 3, 5, 7, mask=random_mask(g, 3, 4, 5, 7), note=" (a different mask per head)"),
        _mha_case(g, 16, 4, 3, 5, 7, bias=False, mask=random_mask(g, 3, 1, 5, 7)),
        _mha_case(g, 6, 1, 2, 6, 6, mask=causal(6), self_attention=True, note=" (one head, causal)"),
        _mha_case(g, 8, 8, 2, 3, 4, mask=random_mask(g, 3, 4), note=" (d_head = 1)"),
        _mha_case(g, 12, 3, 4, 1, 1, note=" (length 1)"),
        _mha_case(g, 20, 5, 1, 4, 9, mask=random_mask(g, 1, 1, 1, 9)),
        transposed,
    ]


@MultiHeadAttention.prop("q_proj, k_proj, v_proj and out_proj are nn.Linear(d_model, d_model, bias)")
def _(g):
    def judge(results, dtype):
        for result, bias in zip(results, (True, False)):
            call = "MultiHeadAttention(8, 2)" if bias else "MultiHeadAttention(8, 2, bias=False)"
            problem = linear_layers_problem(result.structure, call,
                                            dict.fromkeys(PROJECTIONS, f"in_features=8, out_features=8, bias={bias}"))
            if problem:
                return problem
        return None
    return [Case("MultiHeadAttention(8, 2)", init=(8, 2), inspect=True),
            Case("MultiHeadAttention(8, 2, bias=False)", init=(8, 2, False), inspect=True)], judge


def builtin_attention(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``nn.MultiheadAttention(batch_first=True)`` returns for a case, given the case's weights (float64, CPU)."""
    d_model, n_heads = case.init[0], case.init[1]
    bias = "q_proj.bias" in case.state
    builtin = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=torch.float64)
    state = {key: value.detach().cpu().double() for key, value in case.state.items()}
    with torch.no_grad():
        builtin.in_proj_weight.copy_(torch.cat([state[f"{n}.weight"] for n in PROJECTIONS[:3]]))
        builtin.out_proj.weight.copy_(state["out_proj.weight"])
        if bias:
            builtin.in_proj_bias.copy_(torch.cat([state[f"{n}.bias"] for n in PROJECTIONS[:3]]))
            builtin.out_proj.bias.copy_(state["out_proj.bias"])
    query, key, value = (t.detach().cpu().double() for t in case.args)
    batch, t_q, t_k = query.shape[0], query.shape[1], key.shape[1]
    attn_mask = None
    if "mask" in case.kwargs:  # the built-in's boolean mask means the opposite: True = masked out
        full = case.kwargs["mask"].cpu().expand(batch, n_heads, t_q, t_k)
        attn_mask = ~full.reshape(batch * n_heads, t_q, t_k)
    with torch.no_grad():
        return builtin(query, key, value, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)


@MultiHeadAttention.prop("equals nn.MultiheadAttention(batch_first=True) given the same weights")
def _(g):
    cases = [
        _mha_case(g, 8, 2, 2, 3, 5, mask=random_mask(g, 2, 1, 3, 5)),
        _mha_case(g, 8, 4, 1, 4, 2, bias=False),
        _mha_case(g, 6, 3, 2, 5, 5, mask=causal(5), self_attention=True),
    ]

    def judge(results, dtype):
        for case, result in zip(cases, results):
            out, weights = result.output
            expected_out, expected_weights = builtin_attention(case)
            if tuple(weights.shape) != tuple(expected_weights.shape) or not close(weights, expected_weights, dtype):
                return (f"With {case.label}, your `weights` differ from those of nn.MultiheadAttention(batch_first=True, "
                        "average_attn_weights=False) given the same weights: one (T_q, T_k) matrix per head.")
            if tuple(out.shape) != tuple(expected_out.shape) or not close(out, expected_out, dtype):
                return (f"With {case.label}, your `out` differs from that of nn.MultiheadAttention(batch_first=True) "
                        "given the same weights.")
        return None
    return cases, judge


@MultiHeadAttention.prop("gradients reach query, key, value and the four projections")
def _(g):
    names = {"args.0": "query", "args.1": "key", "args.2": "value"}
    names.update({f"params.{p}.{w}": f"{p}.{w}" for p in PROJECTIONS for w in ("weight", "bias")})
    return gradients_flow(_mha_case(g, 8, 2, 2, 3, 4), names)


def _with_weights(ref, change):
    """A wrong MultiHeadAttention: the reference, run with some parameters replaced by ``change(params, d_model, n_heads)``."""
    return with_parameters(ref.MultiHeadAttention, lambda params, model: change(params, model.q_proj.out_features,
                                                                                model.n_heads))


def _scale_queries(params: dict, factor: float) -> dict:
    return {name: params[name] * factor for name in ("q_proj.weight", "q_proj.bias") if name in params}


@MultiHeadAttention.mistake("the scores are not divided by sqrt(d_head).")
def no_scaling(ref):
    return _with_weights(ref, lambda p, d_model, h: _scale_queries(p, math.sqrt(d_model // h)))


@MultiHeadAttention.mistake("the scores are divided by sqrt(d_model); each head compares vectors of "
                            "d_head = d_model / n_heads features, so divide by sqrt(d_head).")
def scales_by_d_model(ref):
    return _with_weights(ref, lambda p, d_model, h: _scale_queries(p, 1 / math.sqrt(h)))


@MultiHeadAttention.mistake("the features are split into heads as '(d_head h)' instead of '(h d_head)': head j "
                            "must take the contiguous block j*d_head:(j+1)*d_head of the projected features.")
def interleaved_heads(ref):
    def change(p, d_model, h):
        order = interleaving(d_model, h, p["q_proj.weight"].device)
        moved = {name: p[name][order] for name in p if name.split(".")[0] in PROJECTIONS[:3]}
        moved["out_proj.weight"] = p["out_proj.weight"][:, order]
        return moved
    return _with_weights(ref, change)


@MultiHeadAttention.mistake("out_proj is not applied: the concatenated heads must go through the output projection.")
def no_out_proj(ref):
    def change(p, d_model, h):
        weight = p["out_proj.weight"]
        identity = {"out_proj.weight": torch.eye(d_model, dtype=weight.dtype, device=weight.device)}
        if "out_proj.bias" in p:
            identity["out_proj.bias"] = torch.zeros_like(p["out_proj.bias"])
        return identity
    return _with_weights(ref, change)


@MultiHeadAttention.mistake("the queries are made with k_proj instead of q_proj.")
def queries_from_k_proj(ref):
    return _with_weights(ref, lambda p, d_model, h: {
        name.replace("k_proj", "q_proj"): p[name] for name in ("k_proj.weight", "k_proj.bias") if name in p})


@MultiHeadAttention.mistake("the values are computed from `key` instead of `value`.")
def values_from_key(ref):
    return with_forward(ref.MultiHeadAttention,
                        lambda self, right, query, key, value, mask=None: right(query, key, key, mask))


@MultiHeadAttention.mistake("the weights are averaged over the heads; return one (T_q, T_k) matrix per head, "
                            "shape (B, h, T_q, T_k).")
def averaged_weights(ref):
    class Wrong(ref.MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            out, weights = super().forward(query, key, value, mask)
            return out, weights.mean(1)
    return Wrong


@MultiHeadAttention.mistake("the mask is inverted: in this course True means 'may attend' and False means "
                            "'masked out' (nn.MultiheadAttention's boolean masks mean the opposite).")
def inverted_mask(ref):
    class Wrong(ref.MultiHeadAttention):
        def forward(self, query, key, value, mask=None):
            return super().forward(query, key, value, None if mask is None else ~mask)
    return Wrong


mask_ignored(MultiHeadAttention)
uses_multihead_attention(MultiHeadAttention, lambda module: module.q_proj.in_features)
