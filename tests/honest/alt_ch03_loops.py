"""ch03 in another style: the relative positions with nested loops, rotary with complex-free slicing and cat."""

ASSIGNMENTS = ("ch03_positional_encoding",)


def apply(nb, kit):
    kit.replace(
        "relative_positions",
        (
            "def relative_positions(q_len, k_len, max_distance):\n"
            "    rows = [[min(max(j - i, -max_distance), max_distance) + max_distance for j in range(k_len)]\n"
            "            for i in range(q_len)]\n"
            "    return torch.tensor(rows, dtype=torch.long).reshape(q_len, k_len)\n"
        ),
    )
    kit.replace(
        "apply_rotary",
        (
            "def apply_rotary(x, base=10000.0):\n"
            "    T, d = x.shape[-2:]\n"
            "    i = torch.arange(d // 2, dtype=x.dtype, device=x.device)\n"
            "    theta = torch.outer(torch.arange(T, dtype=x.dtype, device=x.device), base ** (-2 * i / d))\n"
            "    pairs = x.unflatten(-1, (d // 2, 2))\n"
            "    a, b = pairs[..., 0], pairs[..., 1]\n"
            "    rotated = torch.stack((a * theta.cos() - b * theta.sin(), a * theta.sin() + b * theta.cos()), dim=-1)\n"
            "    return rotated.flatten(-2)\n"
        ),
    )
