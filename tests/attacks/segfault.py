"""Crash the Python process with a segmentation fault."""

ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "import ctypes\nctypes.string_at(0)\n")
