"""A cell inserted before the tests that turns check() into a no-op."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    kit.insert_before("test_softmax", "def check(*args, **kwargs):\n    print('all good')\ncheck_hidden = check\n")
    kit.insert_before("attention_scores", "from autograder import check")
