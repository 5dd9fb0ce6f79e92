"""Print hundreds of megabytes in the softmax cell, after a wrong softmax."""
ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it
# Whether printing 300 MB outlasts the cell time limit depends on the machine. Both outcomes are
# legitimate: if it finishes, attention_scores (which does not use softmax) keeps its full marks; if the
# cell times out, no later cell runs, and attention_scores earns nothing too, but only then.
ZERO_IF_TIMED_OUT = {"attention_scores"}
MAX_NOTEBOOK_BYTES = 5 * 2**20


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "for _ in range(300):\n    print('x' * 2**20)\n")
