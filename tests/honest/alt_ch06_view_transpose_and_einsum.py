"""ch06 in another style: reshape + transpose instead of einops, and the heads attended with einsum."""

ASSIGNMENTS = ("ch06_multi_head_attention",)


def apply(nb, kit):
    kit.replace(
        "split_heads",
        (
            "def split_heads(x, n_heads):\n"
            "    B, T, D = x.shape\n"
            "    return x.reshape(B, T, n_heads, D // n_heads).transpose(1, 2)\n"
        ),
    )
    kit.replace(
        "merge_heads",
        ("def merge_heads(x):\n    B, h, T, dh = x.shape\n    return x.transpose(1, 2).reshape(B, T, h * dh)\n"),
    )
    kit.replace(
        "MultiHeadAttention",
        (
            "class MultiHeadAttention(nn.Module):\n"
            "    def __init__(self, d_model, n_heads, bias=True):\n"
            "        super().__init__()\n"
            "        self.n_heads = n_heads\n"
            "        self.q_proj = nn.Linear(d_model, d_model, bias=bias)\n"
            "        self.k_proj = nn.Linear(d_model, d_model, bias=bias)\n"
            "        self.v_proj = nn.Linear(d_model, d_model, bias=bias)\n"
            "        self.out_proj = nn.Linear(d_model, d_model, bias=bias)\n"
            "\n"
            "    def forward(self, query, key, value, mask=None):\n"
            "        q, k, v = (split_heads(p(t), self.n_heads) for p, t in\n"
            "                   ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))\n"
            "        scores = torch.einsum('bhqd,bhkd->bhqk', q, k) / math.sqrt(q.shape[-1])\n"
            "        if mask is not None:\n"
            "            scores = scores.masked_fill(mask.logical_not(), float('-inf'))\n"
            "        weights = (scores - scores.amax(-1, keepdim=True)).exp()\n"
            "        weights = weights / weights.sum(-1, keepdim=True)\n"
            "        heads = torch.einsum('bhqk,bhkd->bhqd', weights, v)\n"
            "        return self.out_proj(merge_heads(heads)), weights\n"
        ),
    )
