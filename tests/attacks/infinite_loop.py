"""Loop forever, ignoring interrupts."""

ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n")
