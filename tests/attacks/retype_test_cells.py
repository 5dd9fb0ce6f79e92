"""Turn the test cells into markdown and rename their grade ids."""

REFUSED = "metadata may be corrupted"  # nbgrader refuses the whole notebook: no points, and the report says why


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    kit.cell("test_softmax").cell_type = "markdown"
    kit.cell("test_softmax").pop("outputs", None)
    kit.cell("test_softmax").pop("execution_count", None)
    kit.cell("test_softmax_hidden").metadata["nbgrader"]["grade_id"] = "renamed"
