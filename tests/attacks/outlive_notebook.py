"""Start processes that outlive the notebook, detached from it."""

ZERO = {"softmax", "scaled_dot_product_attention", "SelfAttention"}  # the wrong softmax sinks the two that use it
LEFTOVER = "autograder-attack-sleeper"


def apply(nb, kit):
    kit.replace(
        "softmax",
        kit.WRONG
        + (
            "import subprocess\n"
            "subprocess.Popen(['bash', '-c', 'exec -a autograder-attack-sleeper sleep 600'], start_new_session=True)\n"
        ),
    )
