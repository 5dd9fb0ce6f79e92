"""A cell inserted before the tests that turns check() into a no-op."""
ZERO = {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"}  # every later check calls the fake check()


def apply(nb, kit):
    kit.replace("softmax", kit.WRONG)
    kit.insert_before("test_softmax", "def check(*args, **kwargs):\n    print('all good')\ncheck_hidden = check\n")
