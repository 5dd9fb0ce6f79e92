"""Print hundreds of megabytes in the softmax cell, after a wrong softmax."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it
# What 300 MB of output does depends on the machine: the printing may finish within the cell time limit,
# outlast it, or fill the kernel's memory (the output queues up faster than the grader reads it). Each is
# legitimate: if it finishes, attention_scores (which does not use softmax) keeps its full marks; if the
# notebook stops in this cell, no later cell runs and attention_scores earns nothing too, but only then
# (its feedback must say that its checks did not run because of this cell).
ZERO_IF_STOPPED = {"attention_scores"}
STOPPED_IN = "softmax"
MAX_NOTEBOOK_BYTES = 5 * 2**20


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG + "for _ in range(300):\n    print('x' * 2**20)\n")
