"""Call the built-in softmax that the exercise forbids."""

ZERO = {"softmax"}


def apply(nb, kit):
    kit.replace("softmax", "import torch\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n")
