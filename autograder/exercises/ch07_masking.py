"""Chapter 7: the causal mask, the padding mask, combining them, and a softmax that respects a mask.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution. Two properties run
attention with the student's mask (in the judge, outside the student's code) to check
what the mask is for: causality, and invariance to whatever sits in the padding.
"""
from __future__ import annotations

import math

import torch

from .. import forbidden as capability
from ..compare import describe
from ..cases import close, randn, shapes
from ..spec import Case, Exercise

ASSIGNMENT = "ch07_masking"


def _attend(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Self-attention of x (B, T, d) with itself as queries, keys and values, under a boolean mask (float64, CPU)."""
    x = x.detach().cpu().double()
    scores = (x @ x.transpose(-2, -1) / math.sqrt(x.shape[-1])).masked_fill(~mask.cpu(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ x


def _bool_tensor(value, shape: tuple, call: str):
    """None when ``value`` is a bool tensor of ``shape``, else the sentence that says what it is."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and tuple(value.shape) == shape:
        return None
    return f"{call} should be a bool tensor of shape {shape}, but it is {describe(value)}."


# ------------------------------------------------------------------------------- causal_mask
causal_mask = Exercise("causal_mask", ASSIGNMENT, dtypes=(None,),
                       points=(1, 1), difficulty=1, minutes=10,
                       task="a bool `(T, T)` mask, `True` on and below the diagonal")


@causal_mask.cases
def _(g, hidden):
    lengths = [4, 1, 6] if not hidden else [7, 2, 1, 12]
    return [Case(f"seq_len={t}", (t,)) for t in lengths]


@causal_mask.prop("attention with the mask is causal: changing a future token leaves every earlier output unchanged")
def _(g):
    length = 6
    x = randn(g, 1, length, 4)

    def judge(results, dtype):
        mask = results[0].output
        message = _bool_tensor(mask, (length, length), f"causal_mask({length})")
        if message:
            return message
        if not mask.cpu().diagonal().all():
            return f"In causal_mask({length}) every position should be allowed to attend to itself (the diagonal is True)."
        out = _attend(x, mask)
        for t in range(1, length):
            changed = x.clone()
            changed[:, t] = 10 * torch.randn(changed[:, t].shape, generator=torch.Generator().manual_seed(t),
                                             dtype=changed.dtype)
            if not torch.allclose(_attend(changed, mask)[:, :t], out[:, :t], rtol=1e-9, atol=1e-12):
                return (f"With your causal_mask({length}), changing token {t} changed the attention output of an "
                        f"earlier position (0 to {t - 1}): a position must not see the tokens after it.")
        return None
    return [Case(f"seq_len={length}", (length,))], judge


@causal_mask.mistake("the diagonal is False: each position must also attend to itself (True on and below the diagonal).")
def diagonal_excluded(ref):
    return lambda seq_len: ref.causal_mask(seq_len) & ~torch.eye(seq_len, dtype=torch.bool)


@causal_mask.mistake("the mask lets each position see the future (True on and above the diagonal); it must see "
                     "only itself and the past: row i is True for columns 0 to i.")
def future_allowed(ref):
    return lambda seq_len: ref.causal_mask(seq_len).T


@causal_mask.mistake("the mask is inverted: True must mark the keys a query may attend to (the past and itself).")
def inverted(ref):
    return lambda seq_len: ~ref.causal_mask(seq_len)


@causal_mask.mistake("this is an additive float mask (0 and -inf). In this course a mask is boolean: True = may "
                     "attend, False = masked out.")
def additive_float(ref):
    return lambda seq_len: torch.zeros(seq_len, seq_len).masked_fill(~ref.causal_mask(seq_len), float("-inf"))


# ------------------------------------------------------------------------------ padding_mask
padding_mask = Exercise("padding_mask", ASSIGNMENT, dtypes=(None,),
                        points=(1, 1), difficulty=1, minutes=10,
                        task="a bool `(B, max_len)` mask, `True` at the real tokens")


def _lengths(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


@padding_mask.cases
def _(g, hidden):
    if not hidden:
        return [Case(f"lengths={list(n.tolist())}, max_len={m}", (n, m)) for n, m in (
            (_lengths(3, 1, 4, 2), 4), (_lengths(2, 5), 6), (_lengths(1,), 1), (_lengths(0, 3, 2), 3))]
    random_lengths = torch.randint(0, 10, (6,), generator=g)
    return [Case(f"{len(n)} sequences, max_len={m}" + note, (n, m)) for n, m, note in (
        (random_lengths, 10, ""), (_lengths(0, 3, 2), 3, " (one sequence of length 0)"),
        (_lengths(7, 7), 7, " (no padding)"), (_lengths(1, 4, 2, 5, 3), 8, ""))]


@padding_mask.mistake("the mask is inverted: True must mark the real tokens and False the padding.")
def inverted(ref):
    return lambda lengths, max_len: ~ref.padding_mask(lengths, max_len)


@padding_mask.mistake("one padding position too many is True: positions 0 to length - 1 are real (use <, not <=).")
def includes_length(ref):
    return lambda lengths, max_len: ref.padding_mask(lengths + 1, max_len)


@padding_mask.mistake("the result is transposed: it should have one row per sequence, shape (B, max_len).")
def transposed(ref):
    return lambda lengths, max_len: ref.padding_mask(lengths, max_len).T


@padding_mask.mistake("the padding is put at the start of each row; in this course sequences are padded at the "
                      "end, so the real tokens come first.")
def left_padded(ref):
    return lambda lengths, max_len: ref.padding_mask(lengths, max_len).flip(-1)


# ----------------------------------------------------------------------------- combine_masks
combine_masks = Exercise("combine_masks", ASSIGNMENT, dtypes=(None,),
                         points=(1, 2), difficulty=2, minutes=20,
                         task="a bool `(B, 1, T, T)` mask: the key is real, and not in the future when `causal`")


@combine_masks.cases
def _(g, hidden):
    if not hidden:
        return [Case(f"lengths={list(n.tolist())}, max_len={m}, causal={c}", (n, m, c)) for n, m, c in (
            (_lengths(3, 1), 4, False), (_lengths(2, 4), 4, True), (_lengths(5, 3, 4), 5, True),
            (_lengths(0, 2), 3, True))]
    random_lengths = torch.randint(1, 9, (5,), generator=g)
    return [Case(f"{len(n)} sequences, max_len={m}, causal={c}" + note, (n, m, c)) for n, m, c, note in (
        (random_lengths, 8, False, ""), (random_lengths, 8, True, ""), (_lengths(0, 2), 3, True, " (a length 0)"),
        (_lengths(1,), 1, False, " (length 1)"), (_lengths(6, 6), 6, True, " (no padding)"))]


@combine_masks.prop("attention with the mask ignores padding: changing a padding token changes no real position's output")
def _(g):
    lengths, max_len = _lengths(5, 3, 1), 5
    x = randn(g, 3, max_len, 4)

    def judge(results, dtype):
        for result, causal in zip(results, (False, True)):
            call = f"combine_masks(lengths=[5, 3, 1], max_len=5, causal={causal})"
            mask = result.output
            message = _bool_tensor(mask, (3, 1, 5, 5), call)
            if message:
                return message
            changed = x.clone()
            for b, n in enumerate(lengths.tolist()):
                changed[b, n:] = 10 * torch.randn(changed[b, n:].shape, generator=torch.Generator().manual_seed(b),
                                                  dtype=changed.dtype)
            mask = mask.cpu()[:, 0]
            out, out_changed = _attend(x, mask), _attend(changed, mask)
            for b, n in enumerate(lengths.tolist()):
                if not torch.allclose(out_changed[b, :n], out[b, :n], rtol=1e-9, atol=1e-12):
                    return (f"With the mask of {call}, changing a padding token of sequence {b} changed the attention "
                            "output of a real token: padding keys must be masked out for every query.")
        return None
    return [Case("lengths=[5, 3, 1], max_len=5, causal=False", (lengths, max_len, False)),
            Case("lengths=[5, 3, 1], max_len=5, causal=True", (lengths, max_len, True))], judge


def _queries_only(ref, lengths, max_len):
    """The padding mask applied to the rows (queries) instead of the columns (keys)."""
    return ref.combine_masks(lengths, max_len, False).transpose(-2, -1)


@combine_masks.mistake("the padding mask is applied to the queries (rows) instead of the keys (columns): a query "
                       "may attend a key iff the KEY is a real token.")
def queries_masked(ref):
    def wrong(lengths, max_len, causal):
        rows = _queries_only(ref, lengths, max_len)
        return rows & ref.causal_mask(max_len).to(rows.device) if causal else rows
    return wrong


@combine_masks.mistake("padding queries are masked too, which leaves their rows with no key at all. Mask only the "
                       "keys: the outputs at padding positions are ignored later anyway.")
def queries_and_keys_masked(ref):
    return lambda lengths, max_len, causal: (ref.combine_masks(lengths, max_len, causal)
                                             & _queries_only(ref, lengths, max_len))


@combine_masks.mistake("the two masks are combined with OR; a key must be real AND not in the future, so use &.")
def or_instead_of_and(ref):
    def wrong(lengths, max_len, causal):
        padding = ref.combine_masks(lengths, max_len, False)
        return padding | ref.causal_mask(max_len).to(padding.device) if causal else padding
    return wrong


@combine_masks.mistake("the `causal` flag is ignored: the causal mask must be applied only when causal is True.")
def always_causal(ref):
    return lambda lengths, max_len, causal: ref.combine_masks(lengths, max_len, True)


@combine_masks.mistake("the head axis is missing: return shape (B, 1, T, T), so that the mask broadcasts over the "
                       "heads of (B, h, T, T) scores.")
def no_head_axis(ref):
    return lambda lengths, max_len, causal: ref.combine_masks(lengths, max_len, causal).squeeze(1)


# ---------------------------------------------------------------------------- masked_softmax
SOFTMAX_WHY = "write the masked softmax from exp, max and sum, so that a row with nothing to attend to gives zeros"
masked_softmax = Exercise(
    "masked_softmax", ASSIGNMENT,
    forbidden=(capability.SOFTMAX, capability.SCALED_DOT_PRODUCT_ATTENTION),
    why_forbidden=SOFTMAX_WHY,
    points=(2, 3), difficulty=3, minutes=30,
    task="the softmax over the allowed keys; masked weights exactly 0; a row with no allowed key all zeros, never NaN (nor a NaN gradient)",
)


def _with_empty_rows(g: torch.Generator, *shape: int, empty: int = 1) -> torch.Tensor:
    """A random mask in which the first ``empty`` rows (over the leading axes) allow no key at all."""
    mask = torch.rand(*shape, generator=g) < 0.6
    keep = torch.randint(0, shape[-1], shape[:-1], generator=g)
    mask = mask.scatter(-1, keep.unsqueeze(-1), True)
    rows = mask.view(-1, shape[-1])
    rows[:empty] = False
    return mask


def _keeping_one(g: torch.Generator, *shape: int) -> torch.Tensor:
    return _with_empty_rows(g, *shape, empty=0)


def _softmax_case(scores, mask, note=""):
    return Case(shapes(scores=scores, mask=mask) + note, (scores, mask))


def _masked_far_above(scores, mask):
    """Masked scores of 1e4, far above every allowed one: the largest score of a row must be taken over the
    allowed keys only, or every allowed exp() underflows to 0 (scores [2, 1, 1e4] with the last one masked)."""
    return _softmax_case(scores.masked_fill(~mask, 1e4), mask, " (masked scores of 1e4, far above the allowed ones)")


@masked_softmax.cases
def _(g, hidden):
    if not hidden:
        padding = torch.tensor([True, True, False, False]).view(1, 1, 1, 4).expand(3, 1, 1, 4).clone()
        padding[2] = False
        return [
            _softmax_case(randn(g, 2, 3, 5), _keeping_one(g, 2, 3, 5)),
            _masked_far_above(randn(g, 2, 3, 5), _keeping_one(g, 2, 3, 5)),
            _softmax_case(randn(g, 2, 4, scale=1e4), _keeping_one(g, 2, 4), " with scores near 1e4"),
            _softmax_case(randn(g, 3, 4, 6), _with_empty_rows(g, 3, 4, 6, empty=2), " (two rows allow no key)"),
            _softmax_case(randn(g, 3, 2, 4, 4), padding, " (a padding mask; sequence 2 has no real token)"),
        ]
    transposed = randn(g, 2, 7, 5).transpose(-1, -2)
    return [
        _softmax_case(randn(g, 4, 6, 9), _keeping_one(g, 4, 6, 9)),
        _masked_far_above(randn(g, 3, 5, 7, scale=3), _keeping_one(g, 3, 5, 7)),
        _softmax_case(randn(g, 3, 7, scale=1e4), _keeping_one(g, 3, 7), " with scores near 1e4"),
        _softmax_case(-randn(g, 3, 7, scale=1e4).abs(), _keeping_one(g, 3, 7), " with scores near -1e4"),
        _softmax_case(randn(g, 2, 3, 5, 8), _with_empty_rows(g, 2, 1, 5, 8, empty=3), " (some rows allow no key)"),
        _softmax_case(randn(g, 5, 1), _with_empty_rows(g, 5, 1, empty=2), " (one key per row)"),
        _softmax_case(transposed, _keeping_one(g, 5, 7), " (non-contiguous scores)"),
        _softmax_case(randn(g, 2, 4, 6, 6), torch.ones(6, 6, dtype=torch.bool).tril(), " (causal)"),
    ]


@masked_softmax.prop("masked weights are exactly 0; a row sums to 1, or to 0 when it allows no key")
def _(g):
    scores, mask = randn(g, 2, 5, 6, scale=3), _with_empty_rows(g, 2, 5, 6, empty=2)

    def judge(results, dtype):
        weights = results[0].output
        if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != tuple(scores.shape):
            return f"masked_softmax(scores, mask) with scores (2, 5, 6) should be a (2, 5, 6) tensor, got {describe(weights)}."
        weights = weights.detach().cpu().double()
        if not torch.isfinite(weights).all():
            return "The weights contain NaN or infinity: every weight must be a number in [0, 1]."
        leaked = weights[~mask]
        if (leaked != 0).any():
            return (f"Where the mask is False the weight must be exactly 0, but the largest such weight is "
                    f"{leaked.abs().max().item():.3g}. Fill masked scores with -inf before taking exp.")
        sums, wanted = weights.sum(-1), mask.any(-1).double()
        if not torch.allclose(sums, wanted, atol=1e-5):
            return ("Each row should sum to 1 when it allows at least one key, and be all zeros when it allows none; "
                    f"the row sums differ from that by up to {(sums - wanted).abs().max().item():.3g}.")
        return None
    return [Case(shapes(scores=scores, mask=mask) + " (two rows allow no key)", (scores, mask))], judge


NAN_GRADIENT = "the gradient with respect to `scores` contains NaN"


@masked_softmax.prop("gradients are finite, even in a row that allows no key")
def _(g):
    scores, mask = randn(g, 3, 4), _with_empty_rows(g, 3, 4, empty=1)

    def judge(results, dtype):
        grad = (results[0].grads or {}).get("args.0")
        if grad is None:
            return ("No gradient reaches `scores`: keep every step in torch (no .detach(), numpy, .item() or "
                    "torch.tensor(...)), so that the model can learn.")
        if not torch.isfinite(grad).all():
            return (f"Your weights are right, but {NAN_GRADIENT} for a row that allows no key: a NaN made in the "
                    "forward pass and replaced afterwards (nan_to_num, torch.where) still flows backward. Mask the "
                    "scores with masked_fill, and never compute -inf - (-inf) or 0 / 0 (for example, divide by a sum "
                    "that you set to 1 where it is 0).")
        return None
    return [Case(shapes(scores=scores, mask=mask) + " (row 0 allows no key)", (scores, mask), grad=True)], judge


@masked_softmax.prop("attention with a causal mask: changing a future token leaves every earlier output unchanged")
def _(g):
    length = 5
    x = randn(g, 1, length, 4)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    changed = []
    for t in range(1, length):
        y = x.clone()
        y[:, t] = randn(g, 1, 4, scale=10)
        changed.append(y)
    inputs = [x] + changed

    def judge(results, dtype):
        outs = []
        for y, result in zip(inputs, results):
            if not isinstance(result.output, torch.Tensor) or tuple(result.output.shape) != (1, length, length):
                return (f"masked_softmax(scores, mask) with scores (1, {length}, {length}) should be a "
                        f"(1, {length}, {length}) tensor, got {describe(result.output)}.")
            outs.append(result.output.detach().cpu().double() @ y)
        for t, out in enumerate(outs[1:], start=1):
            if not close(out[:, :t], outs[0][:, :t], dtype):
                return (f"With a causal mask, changing token {t} changed the attention output of an earlier position "
                        f"(0 to {t - 1}): masked scores, however large, must not affect the weights.")
        return None
    cases = [Case(f"scores of {'the tokens' if i == 0 else f'the tokens with token {i} changed'}, causal mask",
                  (y @ y.transpose(-2, -1) / 2, causal)) for i, y in enumerate(inputs)]
    return cases, judge


# First: on the case with masked scores far above the others, masking after the softmax also gives zeros.
@masked_softmax.mistake("the largest score is taken over all the keys, masked ones included: when a masked score "
                        "is far above the allowed ones, every allowed exp() underflows to 0. Take the maximum after "
                        "masking (over the allowed keys only).")
def max_over_all_keys(ref):
    def wrong(scores, mask):
        underflows = (scores - scores.amax(-1, keepdim=True)).exp() == 0
        return ref.masked_softmax(scores, mask & ~underflows)
    return wrong


@masked_softmax.mistake("the mask is applied after the softmax, so the remaining weights no longer sum to 1. "
                        "Mask the scores (with -inf) before the softmax.")
def mask_after_softmax(ref):
    return lambda scores, mask: ref.masked_softmax(scores, torch.ones_like(mask)).masked_fill(~mask, 0.0)


@masked_softmax.mistake("the mask is inverted: True means 'may attend' and False means 'masked out'.")
def inverted_mask(ref):
    return lambda scores, mask: ref.masked_softmax(scores, ~mask)


@masked_softmax.mistake("masked scores are set to 0 instead of -inf, so masked keys still get weight.")
def fills_with_zero(ref):
    return lambda scores, mask: ref.masked_softmax(scores.masked_fill(~mask, 0.0), torch.ones_like(mask))


@masked_softmax.mistake("a row with no allowed key comes out as NaN (exp(-inf - (-inf)) is NaN, and so is 0 / 0). "
                        "Such a row must be all zeros.")
def nan_rows(ref):
    def wrong(scores, mask):
        weights = ref.masked_softmax(scores, mask)
        return weights.masked_fill(~mask.any(-1, keepdim=True), float("nan"))
    return wrong


@masked_softmax.mistake("a row with no allowed key gets equal weights 1 / T_k (this happens when masked scores are "
                        "set to a large negative number instead of -inf). Such a row must be all zeros.")
def uniform_rows(ref):
    def wrong(scores, mask):
        weights = ref.masked_softmax(scores, mask)
        return torch.where(mask.any(-1, keepdim=True), weights, torch.full_like(weights, 1 / scores.shape[-1]))
    return wrong


@masked_softmax.mistake("exp() overflows for large scores. Subtract each row's largest allowed score before exp.")
def overflows(ref):
    def wrong(scores, mask):
        exps = scores.exp().masked_fill(~mask, 0.0)
        return exps / exps.sum(-1, keepdim=True)
    return wrong


@masked_softmax.mistake("the mask is added to the scores (0 and -inf) and the NaN of a row with no allowed key is "
                        "replaced afterwards", expect=NAN_GRADIENT)
def nan_replaced_afterwards(ref):
    def wrong(scores, mask):
        masked = scores + torch.zeros_like(scores).masked_fill(~mask, float("-inf"))
        exps = (masked - masked.amax(-1, keepdim=True)).exp()
        return torch.nan_to_num(exps / exps.sum(-1, keepdim=True), nan=0.0)
    return wrong


@masked_softmax.mistake("calls the built-in softmax", expect="uses torch.softmax")
def builtin(ref):
    def wrong(scores, mask):
        return torch.softmax(scores, -1) * 0 + ref.masked_softmax(scores, mask)
    return wrong
