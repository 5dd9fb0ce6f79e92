"""Empty the test cells, inflate their points and mark them as not graded."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    for grade_id in ("test_softmax", "test_softmax_hidden"):
        cell = kit.cell(grade_id)
        cell.source = "pass"
        cell.metadata["nbgrader"]["points"] = 100
