"""Print hundreds of megabytes."""
ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}  # printing it outlasts the cell time limit
MAX_NOTEBOOK_BYTES = 5 * 2**20


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "for _ in range(300):\n    print('x' * 2**20)\n")
