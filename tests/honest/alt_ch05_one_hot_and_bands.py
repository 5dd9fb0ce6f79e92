"""ch05 in another style: hard weights from one_hot of the argmax, the local mask as a band of triu/tril."""

ASSIGNMENTS = ("ch05_attention_types",)


def apply(nb, kit):
    kit.replace(
        "hard_attention",
        (
            "def hard_attention(q, k, v):\n"
            "    scores = torch.einsum('...qd,...kd->...qk', q, k) / math.sqrt(q.shape[-1])\n"
            "    weights = torch.nn.functional.one_hot(scores.argmax(dim=-1), scores.shape[-1]).to(scores.dtype)\n"
            "    return weights @ v, weights\n"
        ),
    )
    kit.replace(
        "local_attention_mask",
        (
            "def local_attention_mask(seq_len, window):\n"
            "    ones = torch.ones(seq_len, seq_len, dtype=torch.bool)\n"
            "    return ones.triu(-window) & ones.tril(window)\n"
        ),
    )
