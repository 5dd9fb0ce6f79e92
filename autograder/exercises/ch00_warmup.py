"""Chapter 0 (warm-up): all pairwise dot products with einsum, splitting features into heads."""
from __future__ import annotations

import torch

from ..compare import describe
from ..cases import close, randn, shapes
from ..spec import Case, Exercise

ASSIGNMENT = "ch00_warmup"

# ------------------------------------------------------------------------- pairwise_dot
# SYLLABUS.md asks for einops.einsum in the instructions but grades no forbidden call.
pairwise_dot = Exercise("pairwise_dot", ASSIGNMENT)


@pairwise_dot.cases
def _(g, hidden):
    sizes = [(3, 5, 4), (1, 2, 3), (4, 4, 2)] if not hidden else [(7, 3, 16), (1, 1, 1), (5, 5, 9), (2, 6, 1)]
    cases = []
    for n, m, d in sizes:
        a, b = randn(g, n, d), randn(g, m, d)
        cases.append(Case(shapes(a=a, b=b), (a, b)))
    if hidden:
        a, b = randn(g, 6, 4).T, randn(g, 6, 3).T  # transposed views: non-contiguous (4, 6) and (3, 6)
        cases.append(Case("non-contiguous " + shapes(a=a, b=b), (a, b)))
    return cases


@pairwise_dot.prop("entry (i, j) is the dot product of a[i] and b[j], and gradients reach a and b")
def _(g):
    a, b = randn(g, 4, 3), randn(g, 6, 3)

    def judge(results, dtype):
        (result,) = results
        got = result.output
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (4, 6):
            return f"pairwise_dot(a, b) with a (4, 3) and b (6, 3) should be a (4, 6) tensor, got {describe(got)}."
        if not close(got[2, 5], (a[2] * b[5]).sum(), dtype):
            return ("Entry (2, 5) of pairwise_dot(a, b) should be the dot product of a[2] and b[5], "
                    "that is (a[2] * b[5]).sum(), but it is not.")
        if result.grads["args.0"] is None or result.grads["args.1"] is None:
            return "No gradient reaches `a` or `b`: keep every step in torch (no .detach(), numpy or .item())."
        return None
    return [Case(shapes(a=a, b=b), (a, b), grad=True)], judge


@pairwise_dot.mistake("the result is transposed: entry (i, j) should pair a[i] with b[j], shape (n, m), not (m, n).")
def transposed(ref):
    return lambda a, b: ref.pairwise_dot(b, a)


@pairwise_dot.mistake("`a` is paired with itself instead of with `b`.")
def a_with_a(ref):
    return lambda a, b: ref.pairwise_dot(a, a)


@pairwise_dot.mistake("these are cosine similarities: the vectors should not be normalised to length 1.")
def cosine(ref):
    return lambda a, b: ref.pairwise_dot(a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True))


@pairwise_dot.mistake("these are squared distances |a_i - b_j|^2, not dot products.")
def squared_distance(ref):
    return lambda a, b: (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2 * ref.pairwise_dot(a, b)


@pairwise_dot.mistake("everything is summed into one number: keep n and m in the output pattern ('n d, m d -> n m').")
def summed(ref):
    return lambda a, b: ref.pairwise_dot(a, b).sum()


# ----------------------------------------------------------------------------- to_heads
to_heads = Exercise("to_heads", ASSIGNMENT)


@to_heads.cases
def _(g, hidden):
    sizes = [(2, 3, 8, 2), (1, 4, 6, 3), (2, 5, 12, 4)] if not hidden else [(3, 7, 16, 4), (2, 1, 6, 6), (1, 5, 9, 1), (4, 3, 20, 5)]
    cases = []
    for batch, length, d_model, heads in sizes:
        x = randn(g, batch, length, d_model)
        cases.append(Case(shapes(x=x, n_heads=heads), (x, heads)))
    return cases


@to_heads.prop("head j holds features j*d_head to (j+1)*d_head of every token")
def _(g):
    x = randn(g, 2, 3, 12)

    def judge(results, dtype):
        got = results[0].output
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (2, 3, 3, 4):
            return f"to_heads(x, 3) with x of shape (2, 3, 12) should be a (2, 3, 3, 4) tensor, got {describe(got)}."
        if not close(got[1, 2, 0], x[1, 0, 8:12], dtype):
            return ("to_heads(x, 3)[1, 2, 0] (batch 1, head 2, token 0) should be x[1, 0, 8:12], the third block "
                    "of 4 features of that token, but it is not.")
        return None
    return [Case(shapes(x=x, n_heads=3), (x, 3))], judge


@to_heads.mistake("the features are split as '(d_head h)' instead of '(h d_head)': head j must take "
                  "the contiguous block j*d_head:(j+1)*d_head, not every h-th feature.")
def interleaved(ref):
    def wrong(x, n_heads):
        d_model = x.shape[-1]
        order = torch.arange(d_model, device=x.device).view(d_model // n_heads, n_heads).T.reshape(-1)
        return ref.to_heads(x[..., order], n_heads)
    return wrong


@to_heads.mistake("the head axis and the sequence axis are not swapped: the result should be (B, h, T, d_head), not (B, T, h, d_head).")
def not_transposed(ref):
    return lambda x, n_heads: ref.to_heads(x, n_heads).transpose(1, 2)


@to_heads.mistake("x was reshaped to (B, h, T, d_head) directly, which mixes tokens and heads. "
                  "Split the last axis into (h, d_head) first, then move h before T.")
def plain_reshape(ref):
    return lambda x, n_heads: x.reshape(x.shape[0], n_heads, x.shape[1], x.shape[2] // n_heads)


@to_heads.mistake("n_heads is used as the size of each head instead of the number of heads.")
def heads_and_size_swapped(ref):
    return lambda x, n_heads: ref.to_heads(x, x.shape[-1] // n_heads)
