"""Delete the test cells of the exercise."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    nb.cells = [
        c
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") not in ("test_softmax", "test_softmax_hidden")
    ]
