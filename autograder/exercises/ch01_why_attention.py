"""Chapter 1: a recurrent encoder (one step after another) and an attention pool (one look at everything).

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import forbidden as capability
from ..compare import describe
from ..cases import close, gradients_flow, outputs_agree, randn, shapes, transposed
from ..spec import Case, Exercise

ASSIGNMENT = "ch01_why_attention"


# --------------------------------------------------------------------------- rnn_encode
rnn_encode = Exercise(
    "rnn_encode", ASSIGNMENT, outputs=("outputs", "h_T"),
    forbidden=(capability.RNN,),
    why_forbidden="the point is to write the recurrence yourself, one step after another",
    points=(2, 3), difficulty=2, minutes=25,
    task=r"the RNN $h_t = \tanh(x_t W_{xh} + h_{t-1} W_{hh} + b_h)$ over `x (T, d_in)` from $h_0 = 0$: returns `(outputs (T, d_h), h_T (d_h,))`",
)


def _rnn_case(g, length, d_in, d_h, note="", non_contiguous=False):
    x = transposed(g, length, d_in) if non_contiguous else randn(g, length, d_in)
    W_xh = randn(g, d_in, d_h, scale=1 / math.sqrt(d_in))
    W_hh = randn(g, d_h, d_h, scale=0.8 / math.sqrt(d_h))
    b_h = randn(g, d_h, scale=0.3)
    # grad: the gradients through both returned tensors are compared with the reference's, so that
    # detached outputs, or a state detached at every step, fail although the values are right.
    return Case(shapes(x=x, W_xh=W_xh, W_hh=W_hh, b_h=b_h) + note, (x, W_xh, W_hh, b_h), grad=True)


@rnn_encode.cases
def _(g, hidden):
    if not hidden:
        return [_rnn_case(g, 4, 3, 5), _rnn_case(g, 6, 2, 3), _rnn_case(g, 1, 4, 2, " (a single step)")]
    return [_rnn_case(g, 12, 5, 8), _rnn_case(g, 1, 3, 6, " (a single step)"), _rnn_case(g, 9, 1, 4),
            _rnn_case(g, 7, 4, 1), _rnn_case(g, 8, 6, 5, " (non-contiguous x)", non_contiguous=True),
            _rnn_case(g, 30, 3, 16, " (a long sequence)")]


def _pair(result):
    """(outputs, h_T) when the result is a pair of tensors, else None."""
    out = result.output
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return out
    return None


@rnn_encode.prop("h_1 = tanh(x_1 W_xh + b_h) (the state starts at zero) and h_T is the last row of outputs")
def _(g):
    case = _rnn_case(g, 5, 3, 4)
    x, W_xh, _, b_h = case.args

    def judge(results, dtype):
        pair = _pair(results[0])
        if pair is None or tuple(pair[0].shape) != (5, 4) or tuple(pair[1].shape) != (4,):
            return f"rnn_encode on {case.label} should return (outputs (5, 4), h_T (4,)), got {describe(results[0].output)}."
        outputs, h_T = pair
        if not close(outputs[0], torch.tanh(x[0] @ W_xh + b_h), dtype):
            return ("The first state should be h_1 = tanh(x_1 W_xh + h_0 W_hh + b_h) with h_0 = 0, that is "
                    "tanh(x_1 W_xh + b_h), and it should be the first row of `outputs`.")
        if not close(h_T, outputs[-1], dtype):
            return "`h_T` should be the last state, the same vector as the last row of `outputs`."
        return None
    return [case], judge


@rnn_encode.prop("changing the last input leaves every earlier state unchanged")
def _(g):
    case = _rnn_case(g, 6, 3, 4)
    x = case.args[0]
    changed = x.clone()
    changed[-1] = randn(g, 3)
    later = Case(case.label + ", last input changed", (changed,) + case.args[1:])

    def judge(results, dtype):
        first, second = _pair(results[0]), _pair(results[1])
        if first is None or second is None:
            return f"rnn_encode should return (outputs, h_T), got {describe(results[0].output)}."
        if not close(first[0][:-1], second[0][:-1], dtype):
            return ("State h_t may depend only on the inputs x_1..x_t: changing the last input changed earlier "
                    "rows of `outputs`. Process the inputs in order, one step at a time.")
        return None
    return [case, later], judge


rnn_encode.prop("gradients flow back to x, W_xh, W_hh and b_h",
                lambda g: gradients_flow(_rnn_case(g, 3, 2, 3),
                                         {"args.0": "x", "args.1": "W_xh", "args.2": "W_hh", "args.3": "b_h"}))


def _stepwise(ref, x, W_xh, W_hh, b_h, h_0, carry=lambda h: h):
    """The reference one step at a time: step t is the reference on x_t alone with h_{t-1} W_hh folded into
    the bias; ``h_0`` is the first state and ``carry`` what is done to each state before the next step."""
    h, states = h_0, []
    for x_t in x:
        _, h = ref.rnn_encode(x_t[None], W_xh, W_hh, b_h + carry(h) @ W_hh)
        states.append(h)
    return torch.stack(states), h


@rnn_encode.mistake("the state does not start at zero: h_0 = 0, so the first state is tanh(x_1 W_xh + b_h). "
                    "Start from x.new_zeros(d_h).")
def h_0_not_zero(ref):
    return lambda x, W_xh, W_hh, b_h: _stepwise(ref, x, W_xh, W_hh, b_h, torch.ones_like(b_h))


@rnn_encode.mistake("tanh is missing: each state is x_t W_xh + h_{t-1} W_hh + b_h, which grows without bound. "
                    "Apply torch.tanh at every step.")
def no_tanh(ref):
    def wrong(x, W_xh, W_hh, b_h):
        # tanh(z) = z for tiny z: the reference on inputs scaled by 1e-5, scaled back, is the RNN without tanh.
        outputs, h_T = ref.rnn_encode(x * 1e-5, W_xh, W_hh, b_h * 1e-5)
        return outputs / 1e-5, h_T / 1e-5
    return wrong


@rnn_encode.mistake("the returned states are cut from the computation (.detach(), or rebuilt with torch.tensor): "
                    "no gradient flows back through `outputs`.", expect="some path from `x` to them is cut")
def detached_outputs(ref):
    def wrong(x, W_xh, W_hh, b_h):
        outputs, h_T = ref.rnn_encode(x, W_xh, W_hh, b_h)
        return outputs.detach(), h_T
    return wrong


@rnn_encode.mistake("the state is detached at every step (h = h.detach()), so gradients stop after one step.",
                    expect="some path from `x` to them is cut")
def state_detached_every_step(ref):
    return lambda x, W_xh, W_hh, b_h: _stepwise(ref, x, W_xh, W_hh, b_h, torch.zeros_like(b_h), torch.Tensor.detach)


@rnn_encode.mistake("the previous state is never fed back: each h_t is computed from x_t alone, so W_hh is unused. "
                    "Keep the new state in the variable the next step reads.")
def no_recurrence(ref):
    return lambda x, W_xh, W_hh, b_h: ref.rnn_encode(x, W_xh, torch.zeros_like(W_hh), b_h)


@rnn_encode.mistake("W_hh is used transposed: the state is a row vector, so the step is h_{t-1} @ W_hh, not W_hh @ h_{t-1}.")
def transposed_w_hh(ref):
    return lambda x, W_xh, W_hh, b_h: ref.rnn_encode(x, W_xh, W_hh.T, b_h)


@rnn_encode.mistake("the bias b_h is left out.")
def no_bias(ref):
    return lambda x, W_xh, W_hh, b_h: ref.rnn_encode(x, W_xh, W_hh, torch.zeros_like(b_h))


@rnn_encode.mistake("`outputs` holds h_0..h_{T-1} instead of h_1..h_T: store each state after computing it, not before.")
def outputs_shifted(ref):
    def wrong(x, W_xh, W_hh, b_h):
        outputs, h_T = ref.rnn_encode(x, W_xh, W_hh, b_h)
        return torch.cat([torch.zeros_like(outputs[:1]), outputs[:-1]]), h_T
    return wrong


@rnn_encode.mistake("`h_T` keeps an extra axis of size 1: it should have shape (d_h,), not (1, d_h).")
def h_T_with_extra_axis(ref):
    def wrong(x, W_xh, W_hh, b_h):
        outputs, h_T = ref.rnn_encode(x, W_xh, W_hh, b_h)
        return outputs, h_T.unsqueeze(0)
    return wrong


@rnn_encode.mistake("uses nn.RNN", expect="uses torch.nn.RNN")
def builtin(ref):
    def wrong(x, W_xh, W_hh, b_h):
        nn.RNN(W_xh.shape[0], W_xh.shape[1])
        return ref.rnn_encode(x, W_xh, W_hh, b_h)
    return wrong


# ------------------------------------------------------------------------ attention_pool
attention_pool = Exercise("attention_pool", ASSIGNMENT,
                          points=(2, 2), difficulty=1, minutes=15,
                          task=r"`query (d,)`, `keys (n, d)`, `values (n, d_v)` → $\sum_j \operatorname{softmax}(s)_j v_j$ of shape `(d_v,)`, with $s_j = k_j \cdot q$ (no scaling)")


def _pool_case(g, n, d, d_v, note="", scale=1.0, non_contiguous=False):
    query = randn(g, d, scale=scale)
    keys = transposed(g, n, d, scale=scale) if non_contiguous else randn(g, n, d, scale=scale)
    values = randn(g, n, d_v)
    return Case(shapes(query=query, keys=keys, values=values) + note, (query, keys, values))


def _large_scores_case(g, n, d):
    """Scores in the hundreds, far apart: exp() overflows, but the softmax is a clean one-hot."""
    while True:
        case = _pool_case(g, n, d, 3, " with scores in the hundreds", scale=20.0)
        query, keys, _ = case.args
        top = (keys @ query).sort(descending=True).values
        if top[0] > 800 and top[0] - top[1] > 50:
            return case


@attention_pool.cases
def _(g, hidden):
    if not hidden:
        return [_pool_case(g, 5, 4, 4), _pool_case(g, 6, 3, 2), _pool_case(g, 3, 8, 5), _large_scores_case(g, 4, 4)]
    return [_pool_case(g, 9, 6, 6), _pool_case(g, 1, 4, 3, " (a single key)"), _pool_case(g, 7, 1, 2),
            _pool_case(g, 6, 5, 1), _pool_case(g, 50, 16, 8, scale=0.5),
            _pool_case(g, 8, 5, 3, " (non-contiguous keys)", non_contiguous=True), _large_scores_case(g, 6, 3)]


@attention_pool.prop("the output is a weighted average of the values: equal values give that value back")
def _(g):
    query, keys = randn(g, 4), randn(g, 6, 4)
    row = randn(g, 3)
    values = row.expand(6, 3).clone()

    def judge(results, dtype):
        out = results[0].output
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (3,):
            return f"attention_pool with values (6, 3) should return a tensor of shape (3,), got {describe(out)}."
        if not close(out, row, dtype):
            return ("When every value is the same vector v, the output should be v: the weights are a softmax, "
                    "so they are positive and sum to 1. Check that you normalise the weights.")
        return None
    return [Case(shapes(query=query, keys=keys, values=values) + " (all values equal)", (query, keys, values))], judge


@attention_pool.prop("shuffling the (key, value) pairs together leaves the output unchanged")
def _(g):
    case = _pool_case(g, 7, 4, 3)
    query, keys, values = case.args
    perm = torch.randperm(7, generator=g)
    shuffled = Case(case.label + ", pairs shuffled", (query, keys[perm], values[perm]))
    return outputs_agree([case, shuffled], "Attention pooling treats the (key, value) pairs as a set: shuffling them "
                         "together should not change the output, but yours does. Pair key j with value j only "
                         "through the weights.")


attention_pool.prop("gradients flow back to the query, the keys and the values",
                    lambda g: gradients_flow(_pool_case(g, 4, 3, 2),
                                             {"args.0": "query", "args.1": "keys", "args.2": "values"}))


@attention_pool.mistake("the scores are divided by sqrt(d): in this chapter's pool the scores are plain dot products, keys @ query.")
def scaled(ref):
    return lambda query, keys, values: ref.attention_pool(query / math.sqrt(query.shape[-1]), keys, values)


@attention_pool.mistake("the softmax is missing: the raw scores keys @ query are used as weights. "
                        "Turn them into positive weights that sum to 1 first.")
def no_softmax(ref):
    return lambda query, keys, values: (keys @ query) @ values


@attention_pool.mistake("the query and the keys are ignored: this is the plain mean of the values, with equal weights.")
def plain_mean(ref):
    return lambda query, keys, values: values.mean(dim=0)


@attention_pool.mistake("only the best-matching value is returned (hard attention): use a softmax over all the scores "
                        "and blend every value.")
def hard_max(ref):
    return lambda query, keys, values: values[(keys @ query).argmax()]


@attention_pool.mistake("the query is compared with the values instead of the keys: the scores are keys @ query.")
def scores_from_values(ref):
    return lambda query, keys, values: ref.attention_pool(query, values, values)


@attention_pool.mistake("exp() overflows for large scores, giving NaN. Subtract the largest score before exp "
                        "(or use torch.softmax, which does).")
def naive_exp(ref):
    def wrong(query, keys, values):
        out = ref.attention_pool(query, keys, values)
        exps = torch.exp(keys @ query)
        if not torch.isfinite(exps).all() or exps.sum() == 0:  # inf / inf or 0 / 0
            return torch.full_like(out, float("nan"))
        return out
    return wrong


@attention_pool.mistake("the attention weights are returned instead of the weighted sum of the values.")
def returns_weights(ref):
    return lambda query, keys, values: ref.attention_pool(query, keys, torch.eye(keys.shape[0], dtype=values.dtype,
                                                                                  device=values.device))
