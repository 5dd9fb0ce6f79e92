"""Add a graded cell worth many points that always passes."""

REFUSED = "metadata may be corrupted"  # nbgrader refuses the whole notebook: no points, and the report says why


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    kit.insert_before(
        "test_softmax",
        "print('free points')",
        nbgrader={
            "grade": True,
            "grade_id": "test_softmax_bonus",
            "locked": False,
            "points": 50,
            "schema_version": 3,
            "solution": False,
            "task": False,
        },
    )
