"""Chapter 13: a KV cache, one cached decoding step, and tiled attention with an online softmax.

None of the three is a plain "call once, compare the result" function, so each case runs
through a small harness module (an ``nn.Module`` of the checks' own, built around the student's
code by the ``Harness`` calling strategy):

- ``KVCache`` is a plain class: a case is a sequence of appends to fresh caches, and the
  harness reports the first cache's ``k`` and ``v`` afterwards;
- ``cached_attention_step`` decodes a sequence token by token, with a cache the checks
  provide (sometimes already holding tokens the student's code never sees), and reports
  every step's output and what ended up in the cache;
- ``tiled_attention`` is called as is, except in the case that measures the memory its
  tensors hold at their peak (``TensorMemoryMeter``).

The catalogue of wrong versions is written on top of the reference (``ref``) where it can
be; the tiled-attention mistakes that change the algorithm itself are written as the
(wrong) formula they compute.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import forbidden as capability
from ..calling import Harness, load_weights
from ..compare import describe
from ..components import MultiHeadAttention
from ..errors import CheckFailure
from ..cases import close, gradients_reach, linear_weight, randn, shapes
from ..spec import Case, Exercise
from ..tools import TensorMemoryMeter

ASSIGNMENT = "ch13_efficient_inference"


# ------------------------------------------------------------------------------ KVCache
class CacheReplay(nn.Module):
    """Make two fresh caches, append ``appends`` to the first (interleaved with ``others`` to the
    second), and return the first cache's ``(k, v)``."""

    def __init__(self, cache_class):
        super().__init__()
        self.cache_class = cache_class

    def forward(self, appends: list, others: list = ()):
        first, second = self.cache_class(), self.cache_class()
        for i, (k, v) in enumerate(appends):
            returned = first.append(k, v)
            if returned is not None:
                raise CheckFailure(f"`KVCache.append(k, v)` should return nothing (None): it changes the cache itself. "
                                   f"Yours returned {describe(returned)}.")
            if i < len(others):
                second.append(*others[i])
        for name in ("k", "v"):
            if not hasattr(first, name):
                raise CheckFailure(f"A KVCache should have an attribute `{name}` (None while empty), but yours has none.")
        return first.k, first.v


KVCache = Exercise("KVCache", ASSIGNMENT, call=Harness(CacheReplay, kind="class"), outputs=("cache.k", "cache.v"), points=(1, 1), difficulty=1, minutes=10, task="a plain class: `KVCache()` starts empty (`k` and `v` are `None`); `append(k, v)` adds `(B, h, t, d)` keys and values after the ones already held, along the time axis")


def _kv(g, batch, heads, t, d_k, d_v=None):
    return randn(g, batch, heads, t, d_k), randn(g, batch, heads, t, d_v or d_k)


def _appends_label(appends, others=()) -> str:
    k0, v0 = appends[0]
    lengths = ", ".join(str(k.shape[-2]) for k, _ in appends)
    text = (f"{len(appends)} appends to KVCache() of k (B={k0.shape[0]}, h={k0.shape[1]}, t, d_k={k0.shape[-1]}) and "
            f"v (..., d_v={v0.shape[-1]}) with t = {lengths}")
    return text + (", interleaved with appends to a second KVCache()" if others else "")


def _cache_case(appends, others=(), note=""):
    return Case(_appends_label(appends, others) + note, (list(appends),), {"others": list(others)} if others else {})


@KVCache.cases
def _(g, hidden):
    if not hidden:
        # Two caches first: a cache whose storage is shared between instances is recognised here.
        return [
            _cache_case([_kv(g, 2, 3, 1, 4) for _ in range(3)], [_kv(g, 2, 3, 1, 4) for _ in range(2)]),
            _cache_case([_kv(g, 1, 2, 1, 3)], note=" (a single append)"),
            _cache_case([_kv(g, 2, 1, 3, 2), _kv(g, 2, 1, 1, 2)], note=" (a prompt of 3 tokens, then one)"),
            _cache_case([_kv(g, 1, 2, 3, 4, 2), _kv(g, 1, 2, 1, 4, 2)], note=" (d_k != d_v)"),
        ]
    prompt = [_kv(g, 3, 4, 5, 8)] + [_kv(g, 3, 4, 1, 8) for _ in range(6)]
    k_t, v_t = randn(g, 2, 1, 6, 3).transpose(1, 2), randn(g, 2, 1, 6, 5).transpose(1, 2)
    return [
        _cache_case([_kv(g, 2, 2, 1, 4) for _ in range(3)], [_kv(g, 2, 2, 2, 4) for _ in range(3)]),
        _cache_case(prompt, note=" (a prompt of 5 tokens, then one token at a time)"),
        _cache_case([_kv(g, 1, 1, 1, 6, 2) for _ in range(12)], note=" (12 single tokens, one head)"),
        _cache_case([(k_t, v_t), _kv(g, 2, 6, 1, 3, 5)], note=" (non-contiguous k and v)"),
    ]


@KVCache.prop("a new cache is empty: k and v are None")
def _(g):
    def judge(results, dtype):
        k, v = results[0].output
        if k is not None or v is not None:
            return (f"A new KVCache() should hold nothing yet: `k` and `v` should be None, but they are "
                    f"{describe(k)} and {describe(v)}.")
        return None
    return [Case("KVCache() with no append", ([],))], judge


def _cat(old, new, dim):
    return new if old is None else torch.cat([old, new], dim=dim)


@KVCache.mistake("two caches share their storage (a class attribute or a mutable default argument), so one "
                 "cache sees the tokens appended to the other. Create the storage in __init__, on self.")
def shared_storage(ref):
    class Shared(ref.KVCache):
        common = None

        def append(self, k, v):
            if Shared.common is None:
                Shared.common = ref.KVCache()
            Shared.common.append(k, v)
            self.k, self.v = Shared.common.k, Shared.common.v
    return Shared


@KVCache.mistake("each append replaces what the cache held: `k` and `v` should keep every token appended so far.")
def replaces(ref):
    class Replaces(ref.KVCache):
        def append(self, k, v):
            self.k, self.v = k, v
    return Replaces


@KVCache.mistake("the new tokens are joined along dim 1, the heads, instead of the time axis (dim -2 of (B, h, t, d)).")
def joins_heads(ref):
    class JoinsHeads(ref.KVCache):
        def append(self, k, v):
            self.k, self.v = _cat(self.k, k, 1), _cat(self.v, v, 1)
    return JoinsHeads


@KVCache.mistake("the new tokens are joined along the last axis, the features, instead of the time axis (dim -2).")
def joins_features(ref):
    class JoinsFeatures(ref.KVCache):
        def append(self, k, v):
            self.k, self.v = _cat(self.k, k, -1), _cat(self.v, v, -1)
    return JoinsFeatures


@KVCache.mistake("the new tokens are put in front of the old ones: keep the oldest token first, the newest last.")
def prepends(ref):
    class Prepends(ref.KVCache):
        def append(self, k, v):
            self.k = k if self.k is None else torch.cat([k, self.k], dim=-2)
            self.v = v if self.v is None else torch.cat([v, self.v], dim=-2)
    return Prepends


@KVCache.mistake("append returns the cache", expect="should return nothing (None)")
def returns_itself(ref):
    class ReturnsItself(ref.KVCache):
        def append(self, k, v):
            super().append(k, v)
            return self
    return ReturnsItself


@KVCache.mistake("keys and values are swapped: `k` holds the values and `v` the keys.")
def swapped(ref):
    class Swapped(ref.KVCache):
        def append(self, k, v):
            super().append(v, k)
    return Swapped


# ---------------------------------------------------------------------- cached_attention_step
class ChecksCache:
    """The cache the checks hand to ``cached_attention_step``: the contract's ``append``, ``k`` and ``v``.

    It also checks what is appended, so that appending the wrong thing (the token itself, or
    keys not split into heads) gets one clear sentence rather than a shape error later.
    """

    def __init__(self, n_heads: int, d_head: int):
        self.n_heads, self.d_head = n_heads, d_head
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        for name, value in (("k", k), ("v", v)):
            if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[1] != self.n_heads \
                    or value.shape[-1] != self.d_head or (self.k is not None and value.shape[0] != self.k.shape[0]):
                got = f"of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else describe(value)
                raise ValueError(f"cache.append(k, v) takes k and v of shape (batch, n_heads={self.n_heads}, "
                                 f"new tokens, d_head={self.d_head}), but {name} is {got}: split the projections "
                                 "into heads before appending")
        self.k, self.v = _cat(self.k, k, -2), _cat(self.v, v, -2)


class Decoder(nn.Module):
    """Decode ``x`` one token at a time with ``step``; the cache may start with ``past_k``/``past_v``.

    Returns every step's output, joined along the time axis, and the cache's final ``k`` and ``v``.
    """

    def __init__(self, step, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        self.step = step
        self.mha = MultiHeadAttention(d_model, n_heads, bias=bias)

    def forward(self, x: torch.Tensor, past_k: torch.Tensor | None = None, past_v: torch.Tensor | None = None):
        cache = ChecksCache(self.mha.n_heads, self.mha.d_model // self.mha.n_heads)
        if past_k is not None:
            cache.append(past_k, past_v)
        outputs = []
        for t in range(x.shape[1]):
            x_t = x[:, t:t + 1]
            out = self.step(self.mha, x_t, cache)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x_t.shape):
                raise CheckFailure(f"`cached_attention_step` should return a tensor of shape {tuple(x_t.shape)} for "
                                   f"x_t of shape {tuple(x_t.shape)}, but it returned {describe(out)}.")
            outputs.append(out)
        return torch.cat(outputs, dim=1), cache.k, cache.v


cached_attention_step = Exercise(
    "cached_attention_step", ASSIGNMENT, call=Harness(Decoder, weights_of="mha"), outputs=("outputs", "cache.k", "cache.v"), points=(2, 3), difficulty=3, minutes=25, task="one decoding step for the newest token `x_t (B, 1, D)` with chapter 6's multi-head attention: project, split into heads, append to the cache, attend over the whole cache, merge, `out_proj`; returns `(B, 1, D)`, equal to full causal attention token by token")


def _mha_state(g, d_model: int, bias: bool) -> dict:
    state = {}
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        state[f"{name}.weight"] = linear_weight(g, d_model, d_model)
        if bias:
            state[f"{name}.bias"] = randn(g, d_model, scale=0.1)
    return state


def _decoding_case(g, batch, length, d_model, n_heads, past=0, bias=True, note=""):
    x = randn(g, batch, length, d_model)
    d_head = d_model // n_heads
    label = (f"MultiHeadAttention(d_model={d_model}, n_heads={n_heads}{'' if bias else ', bias=False'}), "
             f"x {tuple(x.shape)} fed one token at a time, ")
    kwargs = {}
    if past:
        kwargs = {"past_k": randn(g, batch, n_heads, past, d_head), "past_v": randn(g, batch, n_heads, past, d_head)}
        label += f"the cache already holding {past} earlier tokens"
    else:
        label += "from an empty cache"
    return Case(label + note, (x,), kwargs, init=(d_model, n_heads, bias), state=_mha_state(g, d_model, bias))


@cached_attention_step.cases
def _(g, hidden):
    if not hidden:
        # A cache that already holds tokens comes first: every catalogued mistake can be recognised there.
        return [_decoding_case(g, 1, 2, 8, 2, past=2), _decoding_case(g, 2, 4, 6, 3),
                _decoding_case(g, 1, 3, 4, 1, bias=False)]
    return [_decoding_case(g, 2, 2, 8, 2, past=3), _decoding_case(g, 1, 5, 12, 3),
            _decoding_case(g, 3, 1, 4, 1, bias=False, note=" (one token)"),
            _decoding_case(g, 2, 6, 16, 4, past=1), _decoding_case(g, 1, 3, 8, 8, past=4, note=" (d_head = 1)")]


@cached_attention_step.prop("stepping through a sequence equals full causal multi-head attention")
def _(g):
    case = _decoding_case(g, 2, 5, 8, 2)
    x = case.args[0]

    def judge(results, dtype):
        outputs = results[0].output[0]
        mha = MultiHeadAttention(8, 2).double()
        load_weights(mha, case.state, "MultiHeadAttention")
        with torch.no_grad():
            full, _ = mha(x, x, x, torch.ones(5, 5, dtype=torch.bool).tril())
        if not close(outputs, full, dtype):
            worst = (outputs.detach().cpu().double() - full).abs().amax(dim=(0, 2))
            first = int((worst > 1e-3).nonzero()[0]) if (worst > 1e-3).any() else int(worst.argmax())
            return (f"Fed one token at a time from an empty cache, your steps should give the same outputs as "
                    f"mha(x, x, x, causal mask) on the whole sequence x {tuple(x.shape)}; they first differ at "
                    f"token {first}.")
        return None
    return [case], judge


def _mha_with(mha: nn.Module, change: Callable[[nn.Module], None]) -> nn.Module:
    """A copy of ``mha`` with some weights changed in place by ``change``."""
    edited = copy.deepcopy(mha)
    with torch.no_grad():
        change(edited)
    return edited


def _scale_queries(factor: Callable[[nn.Module], float]) -> Callable[[nn.Module], None]:
    def change(mha):
        c = factor(mha)
        mha.q_proj.weight.mul_(c)
        if mha.q_proj.bias is not None:
            mha.q_proj.bias.mul_(c)
    return change


class _Before:
    """The cache as it was before this step; remembers what the step appends."""

    def __init__(self, cache):
        self.k, self.v, self.new = cache.k, cache.v, None

    def append(self, k, v):
        self.new = (k, v)


class _FirstKeyOnly:
    """The cache, read through a window that shows only its first token."""

    def __init__(self, cache):
        self.cache = cache

    def append(self, k, v):
        self.cache.append(k, v)

    @property
    def k(self):
        return self.cache.k[..., :1, :]

    @property
    def v(self):
        return self.cache.v[..., :1, :]


@cached_attention_step.mistake("the new token attends only to the tokens already in the cache: append its own key "
                               "and value first, so that it also attends to itself.")
def attends_before_append(ref):
    def wrong(mha, x_t, cache):
        before = _Before(cache)
        out = ref.cached_attention_step(mha, x_t, before)
        cache.append(*before.new)
        return out
    return wrong


@cached_attention_step.mistake("the new key and value are used for this step but never appended to the cache, so "
                               "later tokens cannot see this one. Call cache.append(k, v), then read cache.k and cache.v.")
def never_appends(ref):
    def wrong(mha, x_t, cache):
        peek = ref.KVCache()
        if cache.k is not None:
            peek.append(cache.k, cache.v)
        return ref.cached_attention_step(mha, x_t, peek)
    return wrong


@cached_attention_step.mistake("the new token attends only to the first token in the cache. It is the newest "
                               "position, so it may attend to every cached key: no causal mask is needed here "
                               "(the first row of a causal mask, or is_causal=True with one query, keeps only key 0).")
def first_key_only(ref):
    return lambda mha, x_t, cache: ref.cached_attention_step(mha, x_t, _FirstKeyOnly(cache))


@cached_attention_step.mistake("the scores are not divided by sqrt(d_head).")
def no_scaling(ref):
    def wrong(mha, x_t, cache):
        d_head = mha.d_model // mha.n_heads
        return ref.cached_attention_step(_mha_with(mha, _scale_queries(lambda m: math.sqrt(d_head))), x_t, cache)
    return wrong


@cached_attention_step.mistake("the scores are divided by sqrt(d_model) instead of sqrt(d_head), the size of one head.")
def scales_by_d_model(ref):
    def wrong(mha, x_t, cache):
        return ref.cached_attention_step(_mha_with(mha, _scale_queries(lambda m: 1 / math.sqrt(m.n_heads))), x_t, cache)
    return wrong


@cached_attention_step.mistake("the output projection out_proj is missing after the heads are merged.")
def no_out_proj(ref):
    def identity(mha):
        mha.out_proj.weight.copy_(torch.eye(mha.d_model))
        if mha.out_proj.bias is not None:
            mha.out_proj.bias.zero_()
    return lambda mha, x_t, cache: ref.cached_attention_step(_mha_with(mha, identity), x_t, cache)


# ------------------------------------------------------------------------------ tiled_attention
class Tiled(nn.Module):
    """Call ``fn(q, k, v, block_size)``; with ``measure=True``, also report its peak tensor memory."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, q, k, v, block_size, measure: bool = False):
        if not measure:
            return self.fn(q, k, v, block_size)
        with torch.no_grad(), TensorMemoryMeter(exclude=(q, k, v)) as meter:
            out = self.fn(q, k, v, block_size)
        return out, meter.peak, list(meter.largest_shape), sorted(meter.fused_kernels)


tiled_attention = Exercise(
    "tiled_attention", ASSIGNMENT, call=Harness(Tiled),
    forbidden=(capability.SCALED_DOT_PRODUCT_ATTENTION,),
    why_forbidden="the point is to write the tiled computation that fused attention kernels use", points=(3, 4), difficulty=4, minutes=40, task="exact attention `(..., T_q, d_v)` computed one block of keys at a time with the online softmax, never holding the `(T_q, T_k)` scores; `F.scaled_dot_product_attention` is not allowed",
)


def _integers(g, *shape, high=40):
    """Whole numbers stored as floats: their products and sums are exact in float32 too."""
    return torch.randint(-high, high + 1, shape, generator=g).double()


def _tiled_case(q, k, v, block_size, note=""):
    return Case(shapes(q=q, k=k, v=v, block_size=block_size) + note, (q, k, v, block_size))


def _large_scores_case(g, batch, t_q, t_k, d_v, block_size):
    q, k, v = _integers(g, batch, t_q, 4), _integers(g, batch, t_k, 4), randn(g, batch, t_k, d_v)
    return _tiled_case(q, k, v, block_size, " (whole-number q and k: scores in the thousands)")


@tiled_attention.cases
def _(g, hidden):
    if not hidden:
        # The first case has a last block shorter than block_size: every catalogued mistake shows there,
        # except the one that only overflows, which the case with large scores catches.
        return [
            _tiled_case(randn(g, 2, 5, 4), randn(g, 2, 11, 4), randn(g, 2, 11, 3), 4),
            _tiled_case(randn(g, 1, 6, 8), randn(g, 1, 6, 8), randn(g, 1, 6, 8), 2),
            _tiled_case(randn(g, 2, 2, 3, 4), randn(g, 2, 2, 7, 4), randn(g, 2, 2, 7, 5), 16,
                        " (one block holds every key)"),
            _large_scores_case(g, 1, 4, 9, 2, 3),
        ]
    return [
        _tiled_case(randn(g, 3, 5, 8), randn(g, 3, 13, 8), randn(g, 3, 13, 6), 5),
        _tiled_case(randn(g, 2, 4, 4), randn(g, 2, 6, 4), randn(g, 2, 6, 4), 1, " (block_size 1)"),
        _tiled_case(randn(g, 2, 1, 8), randn(g, 2, 20, 8), randn(g, 2, 20, 3), 7, " (one query)"),
        _tiled_case(randn(g, 2, 3, 4), randn(g, 2, 1, 4), randn(g, 2, 1, 2), 4, " (one key)"),
        _tiled_case(randn(g, 2, 3, 4, 6), randn(g, 2, 3, 10, 6), randn(g, 2, 3, 10, 6), 4),
        _tiled_case(randn(g, 2, 4, 5), randn(g, 2, 5, 9).transpose(-1, -2), randn(g, 2, 3, 9).transpose(-1, -2), 3,
                    " (non-contiguous k and v)"),
        _large_scores_case(g, 2, 5, 12, 3, 5),
    ]


MEMORY_CASE = {"t_q": 128, "t_k": 4096, "d": 8, "block_size": 128}


@tiled_attention.prop("never holds the (T_q, T_k) score matrix: peak tensor memory under half of it")
def _(g):
    t_q, t_k, d, block = (MEMORY_CASE[key] for key in ("t_q", "t_k", "d", "block_size"))
    q, k, v = randn(g, 1, t_q, d), randn(g, 1, t_k, d), randn(g, 1, t_k, d)
    label = shapes(q=q, k=k, v=v, block_size=block)

    def judge(results, dtype):
        _, peak, largest, fused = results[0].output
        if fused:
            return (f"`tiled_attention` runs a fused attention kernel ({fused[0]}): compute the blocks yourself "
                    "with @, exp and sums.")
        full = t_q * t_k * torch.tensor([], dtype=dtype).element_size()
        if peak >= full / 2:
            return (f"With {label}, the tensors your `tiled_attention` creates hold {peak / 2**20:.2f} MiB at their "
                    f"peak, while the whole ({t_q}, {t_k}) score matrix takes {full / 2**20:.2f} MiB: it must stay "
                    f"under half of that (the largest tensor has shape {tuple(largest)}). Compute scores for at most "
                    "block_size keys at a time and fold them into the running max, sum and output.")
        return None
    return [Case(label + ", measuring memory", (q, k, v, block), {"measure": True})], judge


@tiled_attention.prop("the result does not depend on block_size")
def _(g):
    q, k, v = randn(g, 2, 3, 4), randn(g, 2, 10, 4), randn(g, 2, 10, 3)
    sizes = (1, 3, 10, 64)

    def judge(results, dtype):
        outputs = [r.output for r in results]
        for size, out in zip(sizes[1:], outputs[1:]):
            if not isinstance(out, torch.Tensor) or not isinstance(outputs[0], torch.Tensor) or out.shape != outputs[0].shape \
                    or not close(out, outputs[0], dtype):
                return (f"With {shapes(q=q, k=k, v=v)}, block_size={size} gives a different result from "
                        f"block_size={sizes[0]}: tiling must not change the answer, only how it is computed.")
        return None
    return [Case(shapes(q=q, k=k, v=v, block_size=size), (q, k, v, size)) for size in sizes], judge


@tiled_attention.prop("gradients flow back to q, k and v")
def _(g):
    q, k, v = randn(g, 1, 3, 4), randn(g, 1, 7, 4), randn(g, 1, 7, 2)
    return [Case(shapes(q=q, k=k, v=v, block_size=3), (q, k, v, 3), grad=True)], gradients_reach(
        {"args.0": "q", "args.1": "k", "args.2": "v"})


def _scores(q, k):
    """The scaled scores (..., T_q, T_k), from chapter 4's reference `attention_scores` (used only when
    the catalogue's outputs are made: the student kit has them stored, and no reference)."""
    from .. import reference

    return reference.load("ch04_scaled_dot_product").attention_scores(q, k)


def _blocks(q, k, v, block_size):
    """Per key block: the block's scores (..., T_q, b) and values (..., b, d_v)."""
    return list(zip(_scores(q, k).split(block_size, dim=-1), v.split(block_size, dim=-2)))


@tiled_attention.mistake("when the running maximum grows, the running sum and output are not rescaled by "
                         "exp(m_old - m_new), so earlier blocks keep a weight measured against an old maximum.")
def no_rescaling(ref):
    def wrong(q, k, v, block_size):
        blocks = _blocks(q, k, v, block_size)
        running_max = torch.stack([s.amax(dim=-1) for s, _ in blocks], dim=-1).cummax(dim=-1).values
        total, weighted = 0, 0
        for j, (s, v_block) in enumerate(blocks):
            p = torch.exp(s - running_max[..., j:j + 1])
            total, weighted = total + p.sum(dim=-1, keepdim=True), weighted + p @ v_block
        return weighted / total
    return wrong


@tiled_attention.mistake("the running output is never divided by the running sum at the end.")
def no_final_division(ref):
    def wrong(q, k, v, block_size):
        s = _scores(q, k)
        running_sum = torch.exp(torch.logsumexp(s, dim=-1, keepdim=True) - s.amax(dim=-1, keepdim=True))
        return ref.tiled_attention(q, k, v, block_size) * running_sum
    return wrong


@tiled_attention.mistake("the scores are not divided by sqrt(d_k).")
def no_scaling(ref):
    return lambda q, k, v, block_size: ref.tiled_attention(q * math.sqrt(q.shape[-1]), k, v, block_size)


@tiled_attention.mistake("each key block gets its own softmax and the blocks' outputs are added up; the blocks "
                         "must share one softmax over all keys, through the running maximum and sum.")
def softmax_per_block(ref):
    def wrong(q, k, v, block_size):
        pairs = zip(k.split(block_size, dim=-2), v.split(block_size, dim=-2))
        return sum(ref.tiled_attention(q, k_block, v_block, block_size) for k_block, v_block in pairs)
    return wrong


@tiled_attention.mistake("the last block is dropped when T_k is not a multiple of block_size: loop over "
                         "range(0, T_k, block_size) and let the last block be shorter.")
def drops_last_block(ref):
    def wrong(q, k, v, block_size):
        kept = k.shape[-2] // block_size * block_size
        if kept == 0:
            raise ValueError("no full block")
        return ref.tiled_attention(q, k[..., :kept, :], v[..., :kept, :], block_size)
    return wrong


@tiled_attention.mistake("exp() overflows for large scores: keep a running maximum and exponentiate the scores "
                         "minus it, as in a stable softmax.")
def no_max(ref):
    def wrong(q, k, v, block_size):
        p = torch.exp(_scores(q, k))
        return (p @ v) / p.sum(dim=-1, keepdim=True)
    return wrong


@tiled_attention.mistake("calls the built-in attention", expect="uses torch.nn.functional.scaled_dot_product_attention")
def builtin(ref):
    return lambda q, k, v, block_size: F.scaled_dot_product_attention(q, k, v)
