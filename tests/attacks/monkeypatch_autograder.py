"""Replace the autograder's verdict and comparison with ones that always pass."""

ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}  # tampering voids the notebook
REVIEW = r"cell \d+, line 3 imports `autograder.verdict`"  # what the feedback and the class report name


def apply(nb, kit):
    kit.replace(
        "softmax",
        kit.WRONG
        + (
            "import autograder.verdict, autograder.checks, autograder.compare\n"
            "autograder.verdict.decide = lambda *a, **k: None\n"
            "autograder.checks.check = autograder.checks.check_hidden = lambda *a, **k: None\n"
            "autograder.compare.compare = lambda *a, **k: None\n"
        ),
    )
