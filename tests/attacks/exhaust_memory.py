"""Allocate all the memory there is: the grader stops the kernel past its memory limit, so nothing after it runs."""

ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}


def apply(nb, kit):
    kit.replace(
        "softmax",
        kit.WRONG
        + "hog = []\ntry:\n    while True:\n        hog.append(bytearray(2**30))\nexcept MemoryError:\n    del hog\n",
    )
