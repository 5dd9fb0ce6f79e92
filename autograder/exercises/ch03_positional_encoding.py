"""Chapter 3: telling attention where each token is: sinusoidal, learned, relative and rotary positions.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..calling import MODULE
from ..cases import close, gradients_flow, output_judge, raises, randn, shapes, with_forward
from ..spec import Case, Exercise

ASSIGNMENT = "ch03_positional_encoding"

def _pairs_swapped(x: torch.Tensor) -> torch.Tensor:
    """(..., 2i) <-> (..., 2i+1): the two entries of every pair exchanged."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


# ------------------------------------------------------------- sinusoidal_positional_encoding
sinusoidal_positional_encoding = Exercise(
    "sinusoidal_positional_encoding", ASSIGNMENT, dtypes=(None,),
    dtype_hint="The table is float32: if you compute in float64 for accuracy, convert at the end with "
               ".to(torch.float32) (or .float()).", points=(1, 2), difficulty=2, minutes=20, task="the `(max_len, d_model)` float32 table: sin in column $2i$, cos in column $2i+1$")


def _pe_case(max_len, d_model, note=""):
    return Case(shapes(max_len=max_len, d_model=d_model) + note, (max_len, d_model))


@sinusoidal_positional_encoding.cases
def _(g, hidden):
    if not hidden:
        return [_pe_case(6, 4), _pe_case(10, 8), _pe_case(50, 16), _pe_case(3, 2)]
    return [_pe_case(64, 128), _pe_case(1, 2, " (a single position)"), _pe_case(100, 6), _pe_case(20, 32),
            _pe_case(7, 64)]


@sinusoidal_positional_encoding.prop("position 0 is (0, 1, 0, 1, ...) and every (sin, cos) pair lies on the unit circle")
def _(g):
    @output_judge((12, 10), "sinusoidal_positional_encoding(12, 10)")
    def judge(pe, dtype):
        pe = pe.detach().cpu().double()
        if not torch.allclose(pe[0], torch.tensor([0.0, 1.0] * 5, dtype=pe.dtype), atol=1e-6):
            return ("Row 0 (position 0) should be (0, 1, 0, 1, ...): sin(0) = 0 in the even columns, cos(0) = 1 in "
                    "the odd ones. Count positions from 0 and put sin in column 2i, cos in column 2i+1.")
        radius = pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2
        if not torch.allclose(radius, torch.ones_like(radius), atol=1e-5):
            return ("Columns 2i and 2i+1 should be the sin and the cos of the same angle, so that "
                    "PE[p, 2i]^2 + PE[p, 2i+1]^2 = 1, but they are not.")
        return None
    return [_pe_case(12, 10)], judge


@sinusoidal_positional_encoding.mistake("the exponent is i/d_model instead of 2i/d_model: pair i (columns 2i and 2i+1) "
                                        "uses the angle p / 10000^(2i/d_model).")
def i_instead_of_2i(ref):
    return lambda max_len, d_model: ref.sinusoidal_positional_encoding(max_len, 2 * d_model)[:, :d_model]


@sinusoidal_positional_encoding.mistake("sin and cos are swapped: sin goes in the even columns (2i), cos in the odd ones (2i+1).")
def sin_cos_swapped(ref):
    return lambda max_len, d_model: _pairs_swapped(ref.sinusoidal_positional_encoding(max_len, d_model))


@sinusoidal_positional_encoding.mistake("all the sines come first and all the cosines second: interleave them, sin in "
                                        "column 2i and cos in column 2i+1.")
def halves(ref):
    def wrong(max_len, d_model):
        pe = ref.sinusoidal_positional_encoding(max_len, d_model)
        return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=-1)
    return wrong


@sinusoidal_positional_encoding.mistake("positions are counted from 1: the first row is position 0, so it is (0, 1, 0, 1, ...).")
def from_one(ref):
    return lambda max_len, d_model: ref.sinusoidal_positional_encoding(max_len + 1, d_model)[1:]


@sinusoidal_positional_encoding.mistake("every pair has the same frequency: an integer division such as 2 * i // d_model "
                                        "makes every exponent 0. Divide with / to get 2i/d_model as a fraction.")
def integer_division(ref):
    return lambda max_len, d_model: ref.sinusoidal_positional_encoding(max_len, 2).repeat(1, d_model // 2)


# ------------------------------------------------------------------ LearnedPositionalEmbedding
LearnedPositionalEmbedding = Exercise("LearnedPositionalEmbedding", ASSIGNMENT, call=MODULE, points=(1, 2), difficulty=2, minutes=15, task="a module with a learned table `weight (max_len, d_model)`; `forward(x)` returns `x + weight[:T]`, and raises `ValueError` when $T$ > `max_len`")


def _learned_case(g, max_len, d_model, batch, length, note="", non_contiguous=False):
    x = randn(g, batch, d_model, length).transpose(1, 2) if non_contiguous else randn(g, batch, length, d_model)
    label = f"LearnedPositionalEmbedding(max_len={max_len}, d_model={d_model}) on {shapes(x=x)}{note}"
    return Case(label, (x,), init=(max_len, d_model), state={"weight": randn(g, max_len, d_model)})


@LearnedPositionalEmbedding.cases
def _(g, hidden):
    if not hidden:
        return [_learned_case(g, 8, 4, 2, 5), _learned_case(g, 6, 3, 1, 6, " (T = max_len)"),
                _learned_case(g, 10, 2, 3, 1, " (a single position)")]
    return [_learned_case(g, 16, 8, 4, 11), _learned_case(g, 5, 5, 2, 5, " (T = max_len)"),
            _learned_case(g, 12, 6, 3, 1, " (a single position)"),
            _learned_case(g, 9, 4, 2, 7, " (non-contiguous x)", non_contiguous=True)]


LearnedPositionalEmbedding.prop("gradients reach the input and the table `weight`",
                                lambda g: gradients_flow(_learned_case(g, 6, 3, 2, 4),
                                                         {"args.0": "x", "params.weight": "weight"}))


@LearnedPositionalEmbedding.prop("an input longer than max_len raises ValueError")
def _(g):
    case = _learned_case(g, 4, 3, 2, 6, " (T = 6 > max_len = 4)")
    return raises(case, "ValueError", "LearnedPositionalEmbedding(max_len=4, ...) should raise ValueError for an input "
                  "of 6 positions (T > max_len), but it returned a result.",
                  "For an input longer than max_len, LearnedPositionalEmbedding")


@LearnedPositionalEmbedding.mistake("an input longer than max_len does not raise ValueError",
                                    expect="should raise ValueError for an input of 6 positions")
def no_length_check(ref):
    return with_forward(ref.LearnedPositionalEmbedding, lambda self, right, x: x if x.shape[-2] > self.weight.shape[0]
                        else right(x))


@LearnedPositionalEmbedding.mistake("the input is ignored: the module should return x plus the position vectors, not "
                                    "the position vectors alone.")
def positions_only(ref):
    return with_forward(ref.LearnedPositionalEmbedding, lambda self, right, x: right(torch.zeros_like(x)))


@LearnedPositionalEmbedding.mistake("x is multiplied by the position vectors: they are added, x + weight[:T].")
def multiplies(ref):
    return with_forward(ref.LearnedPositionalEmbedding, lambda self, right, x: x * right(torch.zeros_like(x)))


@LearnedPositionalEmbedding.mistake("the last T rows of the table are used: position t gets row t, so use the first T rows.")
def last_rows(ref):
    return with_forward(ref.LearnedPositionalEmbedding, lambda self, right, x: x + self.weight[self.weight.shape[0]
                                                                                             - x.shape[-2]:])


def _table_kept(ref, keep):
    """A wrong LearnedPositionalEmbedding whose table is stored by ``keep(module, table)`` instead of as it should."""
    class Wrong(ref.LearnedPositionalEmbedding):
        def __init__(self, max_len, d_model):
            super().__init__(max_len, d_model)
            table = self.weight
            del self.weight
            keep(self, table)
    return Wrong


@LearnedPositionalEmbedding.mistake("the table is a buffer", expect="is a buffer (register_buffer), not an nn.Parameter")
def table_a_buffer(ref):
    return _table_kept(ref, lambda module, table: module.register_buffer("weight", table.detach().clone()))


@LearnedPositionalEmbedding.mistake("the table is a plain tensor", expect="is a plain tensor, not an nn.Parameter")
def table_a_plain_tensor(ref):
    return _table_kept(ref, lambda module, table: setattr(module, "weight", table.detach().clone()))


@LearnedPositionalEmbedding.mistake("the table is scaled after it is made a parameter",
                                    expect="is a tensor computed from an nn.Parameter")
def table_scaled_parameter(ref):
    return _table_kept(ref, lambda module, table: setattr(module, "weight", table * 0.02))


@LearnedPositionalEmbedding.mistake("the table is (d_model, max_len)", expect="parameter weight should have shape")
def table_transposed(ref):
    return _table_kept(ref, lambda module, table: setattr(module, "weight", nn.Parameter(table.detach().T.clone())))


# --------------------------------------------------------------------------- relative_positions
relative_positions = Exercise("relative_positions", ASSIGNMENT, dtypes=(None,), points=(1, 2), difficulty=1, minutes=10, task=r"the `(q_len, k_len)` LongTensor $\operatorname{clip}(j - i, -K, K) + K$")


def _relative_case(q_len, k_len, max_distance, note=""):
    return Case(shapes(q_len=q_len, k_len=k_len, max_distance=max_distance) + note, (q_len, k_len, max_distance))


@relative_positions.cases
def _(g, hidden):
    if not hidden:
        return [_relative_case(4, 4, 2), _relative_case(3, 5, 1), _relative_case(5, 3, 3), _relative_case(2, 6, 10)]
    return [_relative_case(20, 30, 7), _relative_case(1, 1, 3), _relative_case(1, 7, 2), _relative_case(6, 1, 2),
            _relative_case(9, 9, 0, " (every offset clipped to 0)"), _relative_case(12, 8, 4)]


@relative_positions.prop("entry (i, j) depends only on j - i, the diagonal is max_distance, and ids lie in 0..2*max_distance")
def _(g):
    @output_judge((7, 9), "relative_positions(7, 9, 3)")
    def judge(ids, dtype):
        ids = ids.cpu()
        if not torch.equal(ids[1:, 1:], ids[:-1, :-1]):
            return "Entry (i, j) should depend only on the offset j - i, so every diagonal should hold one value."
        if not (ids.diagonal() == 3).all():
            return "A query and a key at the same position (offset 0) should get the id max_distance (here 3)."
        if ids.min() < 0 or ids.max() > 6:
            return (f"With max_distance=3 the ids should lie in 0..6 (offsets clipped to [-3, 3], then shifted by 3), "
                    f"but they range from {int(ids.min())} to {int(ids.max())}.")
        return None
    return [_relative_case(7, 9, 3)], judge


@relative_positions.mistake("the offset is i - j instead of j - i: a key after the query (j > i) should get an id "
                            "above max_distance.")
def i_minus_j(ref):
    return lambda q_len, k_len, max_distance: 2 * max_distance - ref.relative_positions(q_len, k_len, max_distance)


@relative_positions.mistake("the clipped offsets are not shifted by max_distance, so some are negative: add max_distance "
                            "to get ids 0..2*max_distance.")
def not_shifted(ref):
    return lambda q_len, k_len, max_distance: ref.relative_positions(q_len, k_len, max_distance) - max_distance


@relative_positions.mistake("the offsets are not clipped to [-max_distance, max_distance] before the shift.")
def not_clipped(ref):
    def wrong(q_len, k_len, max_distance):
        far = q_len + k_len
        return ref.relative_positions(q_len, k_len, far) - far + max_distance
    return wrong


@relative_positions.mistake("this is the clipped distance |j - i|, which loses the direction: keep the sign of j - i, "
                            "clip it, then add max_distance.")
def absolute_distance(ref):
    return lambda q_len, k_len, max_distance: (ref.relative_positions(q_len, k_len, max_distance) - max_distance).abs()


# --------------------------------------------------------------------------------- apply_rotary
apply_rotary = Exercise("apply_rotary", ASSIGNMENT, points=(2, 2), difficulty=3, minutes=30, task=r"RoPE on `x (..., T, d)`: pair $(x_{2i}, x_{2i+1})$ of position $t$ rotated by $t \cdot \text{base}^{-2i/d}$")


def _rotary_case(x, base=None, note=""):
    kwargs = {} if base is None else {"base": base}
    return Case(shapes(x=x) + ("" if base is None else f", base={base}") + note, (x,), kwargs)


@apply_rotary.cases
def _(g, hidden):
    if not hidden:
        return [_rotary_case(randn(g, 4, 6)), _rotary_case(randn(g, 2, 5, 4), 100.0), _rotary_case(randn(g, 2, 3, 4, 8))]
    return [_rotary_case(randn(g, 3, 2, 7, 16)), _rotary_case(randn(g, 1, 1, 2), note=" (a single position)"),
            _rotary_case(randn(g, 5, 2), 500.0), _rotary_case(randn(g, 2, 9, 8), 10.0),
            _rotary_case(randn(g, 2, 6, 5).transpose(1, 2), note=" (non-contiguous x)")]


@apply_rotary.prop("after rotation, q . k depends only on the offset between their positions")
def _(g):
    q, k = randn(g, 8), randn(g, 8)
    x = torch.stack([q.expand(7, 8), k.expand(7, 8)])  # the same q (and k) at every position 0..6

    @output_judge((2, 7, 8), "apply_rotary(x) with x of shape (2, 7, 8)")
    def judge(out, dtype):
        scores = out[0].double() @ out[1].double().T  # scores[m, n] = rotated q at m . rotated k at n
        if not close(scores[1:, 1:], scores[:-1, :-1], dtype):
            return ("After rotation, q at position m and k at position n should have a dot product that depends only "
                    "on n - m, but yours changes along a diagonal. Rotate each pair (x[2i], x[2i+1]) by the angle "
                    "t * base^(-2i/d), with the same angles for q and k.")
        return None
    return [Case("the same q at every position and the same k at every position, x (2, 7, 8)", (x,))], judge


@apply_rotary.prop("position 0 is unchanged and every pair keeps its length")
def _(g):
    x = randn(g, 5, 6)

    @output_judge((5, 6), "apply_rotary(x) with x of shape (5, 6)")
    def judge(out, dtype):
        if not close(out[0], x[0], dtype):
            return "Position 0 is rotated by angle 0, so the first row should come back unchanged. Count positions from 0."

        def pair_lengths(t):
            return t.double().unflatten(-1, (3, 2)).norm(dim=-1)

        if not close(pair_lengths(out), pair_lengths(x), dtype):
            return "A rotation keeps lengths: every pair (x[2i], x[2i+1]) should keep its length, but yours does not."
        return None
    return [_rotary_case(x)], judge


apply_rotary.prop("gradients flow back to x", lambda g: gradients_flow(_rotary_case(randn(g, 2, 3, 4)), {"args.0": "x"}))


@apply_rotary.mistake("the pairs are the two halves (x[i], x[i + d/2]) instead of neighbours (x[2i], x[2i+1]).")
def rotate_half(ref):
    def wrong(x, base=10000.0):
        d = x.shape[-1]
        interleave = torch.arange(d, device=x.device).view(2, d // 2).T.reshape(-1)  # 0, d/2, 1, d/2+1, ...
        out = ref.apply_rotary(x[..., interleave], base)
        return out[..., interleave.argsort()]
    return wrong


@apply_rotary.mistake("the rotation goes the wrong way (by minus the angle): the pair (x0, x1) should become "
                      "(x0 cos - x1 sin, x0 sin + x1 cos).")
def opposite_direction(ref):
    def wrong(x, base=10000.0):
        flip = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        flip[1::2] = -1
        return ref.apply_rotary(x * flip, base) * flip
    return wrong


@apply_rotary.mistake("the exponent is i/d instead of 2i/d: pair i turns at the rate base^(-2i/d).")
def i_instead_of_2i(ref):
    return lambda x, base=10000.0: ref.apply_rotary(x, math.sqrt(base))


@apply_rotary.mistake("the exponent has the wrong sign: the angle is t * base^(-2i/d), so the rates get smaller "
                      "as i grows, not larger.")
def positive_exponent(ref):
    return lambda x, base=10000.0: ref.apply_rotary(x, 1.0 / base)


@apply_rotary.mistake("positions are counted from 1: the first row (position 0) is not rotated.")
def from_one(ref):
    def wrong(x, base=10000.0):
        padded = torch.cat([torch.zeros_like(x[..., :1, :]), x], dim=-2)
        return ref.apply_rotary(padded, base)[..., 1:, :]
    return wrong
