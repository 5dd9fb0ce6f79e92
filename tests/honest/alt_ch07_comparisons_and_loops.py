"""ch07 in another style: masks from comparisons and a loop, masked softmax with torch.where."""

ASSIGNMENTS = ("ch07_masking",)


def apply(nb, kit):
    kit.replace(
        "causal_mask",
        ("def causal_mask(seq_len):\n    i = torch.arange(seq_len)\n    return i[:, None] >= i[None, :]\n"),
    )
    kit.replace(
        "padding_mask",
        (
            "def padding_mask(lengths, max_len):\n"
            "    mask = torch.zeros(len(lengths), max_len, dtype=torch.bool, device=lengths.device)\n"
            "    for row, length in enumerate(lengths.tolist()):\n"
            "        mask[row, :length] = True\n"
            "    return mask\n"
        ),
    )
    kit.replace(
        "masked_softmax",
        (
            "def masked_softmax(scores, mask):\n"
            "    mask = mask.expand_as(scores)\n"
            "    shift = torch.where(mask, scores, torch.full_like(scores, float('-inf'))).amax(-1, keepdim=True)\n"
            "    shift = torch.nan_to_num(shift, neginf=0.0)\n"
            "    exps = torch.where(mask, (scores - shift).exp(), torch.zeros_like(scores))\n"
            "    total = exps.sum(-1, keepdim=True)\n"
            "    return exps / torch.where(total > 0, total, torch.ones_like(total))\n"
        ),
    )
