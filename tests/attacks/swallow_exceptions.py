"""Hide every failure: a custom exception handler and a no-op showtraceback, set in a cell before the tests."""

ZERO = {
    "softmax",
    "attention_scores",
    "scaled_dot_product_attention",
    "SelfAttention",
}  # reaching into the exception display refuses the notebook
REVIEW = r"cell \d+, line 2 uses `set_custom_exc`"  # what the feedback and the class report name


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    kit.insert_before(
        "test_softmax",
        (
            "ip = get_ipython()\n"
            "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
            "ip.showtraceback = lambda *a, **k: None\n"
        ),
    )
