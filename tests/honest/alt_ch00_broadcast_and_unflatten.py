"""ch00 in another style: dot products by broadcasting, heads by unflatten + transpose instead of einops."""

ASSIGNMENTS = ("ch00_warmup",)


def apply(nb, kit):
    kit.replace("pairwise_dot", ("def pairwise_dot(a, b):\n    return (a[:, None, :] * b[None, :, :]).sum(dim=-1)\n"))
    kit.replace(
        "to_heads",
        ("def to_heads(x, n_heads):\n    return x.unflatten(-1, (n_heads, x.shape[-1] // n_heads)).transpose(1, 2)\n"),
    )
