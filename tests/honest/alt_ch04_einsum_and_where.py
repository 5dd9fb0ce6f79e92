"""ch04 in another style: max().values, einsum scores, torch.where for the mask, weights applied by hand."""

ASSIGNMENTS = ("ch04_scaled_dot_product",)


def apply(nb, kit):
    kit.replace(
        "softmax",
        (
            "def softmax(x, dim=-1):\n"
            "    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)\n"
            "    return e / torch.sum(e, dim=dim, keepdim=True)\n"
        ),
    )
    kit.replace(
        "attention_scores",
        ("def attention_scores(q, k):\n    return torch.einsum('...qd,...kd->...qk', q, k) * q.shape[-1] ** -0.5\n"),
    )
    kit.replace(
        "scaled_dot_product_attention",
        (
            "def scaled_dot_product_attention(q, k, v, mask=None):\n"
            "    scores = attention_scores(q, k)\n"
            "    if mask is not None:\n"
            "        scores = torch.where(mask, scores, torch.tensor(float('-inf'), dtype=scores.dtype, device=scores.device))\n"
            "    weights = softmax(scores)\n"
            "    return torch.matmul(weights, v), weights\n"
        ),
    )
    kit.replace(
        "SelfAttention",
        (
            "class SelfAttention(nn.Module):\n"
            "    def __init__(self, d_model, d_k):\n"
            "        super().__init__()\n"
            "        self.W_q, self.W_k, self.W_v = (nn.Linear(d_model, d_k, bias=False) for _ in range(3))\n"
            "\n"
            "    def forward(self, x, mask=None):\n"
            "        q, k, v = (x @ layer.weight.T for layer in (self.W_q, self.W_k, self.W_v))\n"
            "        return scaled_dot_product_attention(q, k, v, mask=mask)\n"
        ),
    )
