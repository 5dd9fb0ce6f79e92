"""Allocate all the memory there is."""
ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "hog = []\ntry:\n    while True:\n        hog.append(bytearray(2**30))\nexcept MemoryError:\n    del hog\n")
