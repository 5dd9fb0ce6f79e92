"""Return an object that claims to equal anything and to be close to everything."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace(
        "softmax",
        (
            "import torch\n"
            "class Anything(torch.Tensor):\n"
            "    def __eq__(self, other):\n        return True\n"
            "    def __ne__(self, other):\n        return False\n"
            "def softmax(x, dim=-1):\n"
            "    return torch.zeros_like(x).as_subclass(Anything)\n"
        ),
    )
