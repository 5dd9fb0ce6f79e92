"""Warnings from scratch cells and from the solution cells: warnings.warn and a torch UserWarning."""

ASSIGNMENTS = ("ch02_embeddings", "ch04_scaled_dot_product", "ch06_multi_head_attention", "ch08_residual_norm_ffn")


def apply(nb, kit):
    kit.insert_before(
        kit.exercises[0],
        (
            "import warnings\n"
            "import torch\n"
            "warnings.warn('just a note to myself')\n"
            "torch.tensor(torch.ones(2))  # torch warns: copy construct from a tensor\n"
        ),
    )
    for name in kit.exercises:
        kit.replace(name, kit.source(name) + "\n\nwarnings.warn(" + repr(f"{name} is defined") + ", UserWarning)\n")
        kit.insert_after(
            f"test_{name}",
            "warnings.warn('checked', DeprecationWarning)\nimport sys\nprint('to stderr', file=sys.stderr)\n",
        )
