"""Stop the Python process in the middle of the notebook."""

ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "import os\nos._exit(0)\n")
