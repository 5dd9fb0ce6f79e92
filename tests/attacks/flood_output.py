"""Print hundreds of megabytes."""
ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it
MAX_NOTEBOOK_BYTES = 5 * 2**20


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "for _ in range(300):\n    print('x' * 2**20)\n")
