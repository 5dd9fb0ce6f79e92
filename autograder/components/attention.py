"""Chapter 4's scaled dot-product attention, on ``F.scaled_dot_product_attention``, and chapter 6's
MultiHeadAttention, on ``F.multi_head_attention_forward``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..forbidden import exempt


class ScaledDotProductAttention(nn.Module):
    """Chapter 4's ``scaled_dot_product_attention`` as a module without parameters, lent to chapters 5 and 6.

    ``forward(q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v), mask=None) -> (out (..., T_q, d_v),
    weights (..., T_q, T_k))``; ``mask`` is boolean, True = may attend. A module, not a function, so
    that chapter 4's checks can forbid it like any built-in class.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None):
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        q, k = q.expand(*batch, *q.shape[-2:]), k.expand(*batch, *k.shape[-2:])
        # The built-in returns only softmax(q k^T / sqrt(d)) @ values; with the identity as values it
        # returns the weights themselves.
        identity = torch.eye(k.shape[-2], dtype=q.dtype, device=q.device).expand(*batch, -1, -1)
        with exempt():
            weights = F.scaled_dot_product_attention(q, k, identity, attn_mask=mask)
            return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention with the chapter-6 interface: ``forward(query, key, value, mask=None)``.

    Returns ``(out (B, T_q, D), weights (B, h, T_q, T_k))``; ``mask`` is boolean, True = may
    attend, and broadcasts against ``(B, h, T_q, T_k)``. Equal to
    ``nn.MultiheadAttention(batch_first=True)`` given the same weights.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        self.d_model, self.n_heads = d_model, n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask=None):
        batch, q_len, _ = query.shape
        k_len = key.shape[1]
        attn_mask = None
        if mask is not None:  # the built-in's boolean mask means the opposite: True = masked out
            full = torch.as_tensor(mask, device=query.device).expand(batch, self.n_heads, q_len, k_len)
            attn_mask = ~full.reshape(batch * self.n_heads, q_len, k_len)
        bias = self.q_proj.bias is not None
        with exempt():
            out, weights = F.multi_head_attention_forward(
                query.transpose(0, 1),
                key.transpose(0, 1),
                value.transpose(0, 1),
                self.d_model,
                self.n_heads,
                in_proj_weight=None,
                in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]) if bias else None,
                bias_k=None,
                bias_v=None,
                add_zero_attn=False,
                dropout_p=0.0,
                out_proj_weight=self.out_proj.weight,
                out_proj_bias=self.out_proj.bias,
                training=self.training,
                attn_mask=attn_mask,
                need_weights=True,
                use_separate_proj_weight=True,
                q_proj_weight=self.q_proj.weight,
                k_proj_weight=self.k_proj.weight,
                v_proj_weight=self.v_proj.weight,
                average_attn_weights=False,
            )
        return out.transpose(0, 1), weights
