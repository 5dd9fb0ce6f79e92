"""Chapter 0 (warm-up): all pairwise dot products with einsum, splitting features into heads."""
from __future__ import annotations

import torch

from ..compare import describe
from ..cases import close, randn, shapes, splits_into_heads
from ..spec import Case, Exercise

ASSIGNMENT = "ch00_warmup"

# ------------------------------------------------------------------------- pairwise_dot
# SYLLABUS.md asks for einops.einsum in the instructions but grades no forbidden call.
pairwise_dot = Exercise("pairwise_dot", ASSIGNMENT, points=(1, 1), difficulty=1, minutes=10, task="`a (n, d)`, `b (m, d)` → all dot products, shape `(n, m)`, with `result[i, j] = a[i] · b[j]`; use `einops.einsum`")


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
to_heads = Exercise("to_heads", ASSIGNMENT, points=(1, 1), difficulty=2, minutes=15, task="`x (B, T, D)` → `(B, h, T, D/h)` with `h = n_heads`, where head $j$ holds features `j*D/h` to `(j+1)*D/h - 1`; use `einops.rearrange`")
splits_into_heads(to_heads)
