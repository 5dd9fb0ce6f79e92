"""ch08 in another style: var(unbiased=False) and rsqrt, the activation chosen in forward."""

ASSIGNMENTS = ("ch08_residual_norm_ffn",)


def apply(nb, kit):
    kit.replace(
        "layer_norm",
        (
            "def layer_norm(x, weight, bias, eps=1e-5):\n"
            "    centred = x - x.mean(-1, keepdim=True)\n"
            "    return centred * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps) * weight + bias\n"
        ),
    )
    kit.replace(
        "PositionwiseFeedForward",
        (
            "class PositionwiseFeedForward(nn.Module):\n"
            "    def __init__(self, d_model, d_ff, dropout=0.0, activation='relu'):\n"
            "        super().__init__()\n"
            "        if activation not in {'relu', 'gelu'}:\n"
            "            raise ValueError('activation must be relu or gelu')\n"
            "        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)\n"
            "        self.dropout = nn.Dropout(dropout)\n"
            "        self.activation = activation\n"
            "\n"
            "    def forward(self, x):\n"
            "        hidden = self.linear1(x)\n"
            "        hidden = torch.relu(hidden) if self.activation == 'relu' else F.gelu(hidden)\n"
            "        return self.linear2(self.dropout(hidden))\n"
        ),
    )
