"""Make every comparison pass: torch.allclose, torch.testing.assert_close, numpy's comparisons."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace(
        "softmax",
        kit.WRONG
        + (
            "import torch, numpy\n"
            "torch.allclose = lambda *a, **k: True\n"
            "torch.testing.assert_close = lambda *a, **k: None\n"
            "numpy.allclose = lambda *a, **k: True\n"
            "torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)\n"
        ),
    )
