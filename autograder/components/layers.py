"""Chapters 8 and 9's layers (and chapter 10's decoder layer), on PyTorch's own Transformer modules.

Each component keeps its chapter's interface and parameter names (``self_attn.q_proj.weight``,
``ff.linear1.weight``, ``norm1.weight``...), so that weights load by the contract's names
whether a notebook uses the component or the student's own class. The forward pass is
PyTorch's ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``,
run with these parameters by ``torch.func.functional_call``: the glue the exercises ask for
(residuals, norm order, the loop over layers) is PyTorch's, not a copy of an answer. Everything runs inside ``forbidden.exempt()``, so
that no later exercise's list of forbidden built-ins counts what a lent component does.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..forbidden import exempt
from .attention import MultiHeadAttention

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _activation_name(activation: str) -> str:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"PositionwiseFeedForward knows the activations 'relu' or 'gelu'; {activation!r} is neither.")
    return activation


class PositionwiseFeedForward(nn.Module):
    """``linear2(dropout(activation(linear1(x))))``, applied to every position alone: (..., d_model) -> (..., d_model)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        self.activation = _activation_name(activation)
        with exempt():
            self.linear1 = nn.Linear(d_model, d_ff)
            self.linear2 = nn.Linear(d_ff, d_model)
            self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with exempt():
            return self.linear2(self.dropout(_ACTIVATIONS[self.activation](self.linear1(x))))


def _builtin_attention_mask(mask, batch: int, n_heads: int, q_len: int, k_len: int, device) -> torch.Tensor | None:
    """The course's boolean mask (True = may attend, broadcasting against (B, h, T_q, T_k))
    as the built-in layers want it: (B * h, T_q, T_k), True = masked out."""
    if mask is None:
        return None
    full = torch.as_tensor(mask, device=device).to(torch.bool).expand(batch, n_heads, q_len, k_len)
    return ~full.reshape(batch * n_heads, q_len, k_len)


def _attention_parameters(prefix: str, attn: MultiHeadAttention) -> dict:
    """The MultiHeadAttention component's weights under nn.MultiheadAttention's names."""
    return {
        f"{prefix}.in_proj_weight": torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
        f"{prefix}.in_proj_bias": torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]),
        f"{prefix}.out_proj.weight": attn.out_proj.weight,
        f"{prefix}.out_proj.bias": attn.out_proj.bias,
    }


def builtin_parameters(layer: nn.Module) -> dict:
    """An EncoderLayer's or DecoderLayer's weights under the names of PyTorch's own layer."""
    params = _attention_parameters("self_attn", layer.self_attn)
    if hasattr(layer, "cross_attn"):
        params.update(_attention_parameters("multihead_attn", layer.cross_attn))
    for name in ("linear1", "linear2"):
        linear = getattr(layer.ff, name)
        params[f"{name}.weight"], params[f"{name}.bias"] = linear.weight, linear.bias
    for name, norm in layer.named_children():
        if isinstance(norm, nn.LayerNorm):
            params[f"{name}.weight"], params[f"{name}.bias"] = norm.weight, norm.bias
    return params


def stacked_parameters(layers: nn.ModuleList, norm: nn.LayerNorm | None) -> dict:
    """A stack's weights under the names of ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``."""
    params = {
        f"layers.{i}.{key}": value for i, layer in enumerate(layers) for key, value in builtin_parameters(layer).items()
    }
    if norm is not None:
        params["norm.weight"], params["norm.bias"] = norm.weight, norm.bias
    return params


def _without_attention_dropout(module: nn.Module) -> nn.Module:
    for inner in module.modules():  # the course's attention has no dropout on its weights
        if isinstance(inner, nn.MultiheadAttention):
            inner.dropout = 0.0
    return module


@functools.cache
def _template(
    kind: type, d_model: int, n_heads: int, d_ff: int, dropout: float, activation: str, norm_first: bool
) -> nn.Module:
    """The built-in layer whose forward we borrow, on the meta device: its own parameters are never
    used (ours replace them at each call), so one template serves every layer of the same shape."""
    with exempt():
        layer = kind(
            d_model, n_heads, d_ff, dropout, activation, batch_first=True, norm_first=norm_first, device="meta"
        )
    return _without_attention_dropout(layer)


@functools.cache
def encoder_stack(n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool) -> nn.Module:
    """``nn.TransformerEncoder`` on the meta device, whose forward the lent encoders borrow."""
    layer = _template(nn.TransformerEncoderLayer, d_model, n_heads, d_ff, dropout, "relu", norm_first)
    with exempt():
        norm = nn.LayerNorm(d_model, device="meta") if norm_first else None
        stack = nn.TransformerEncoder(layer, n_layers, norm=norm, enable_nested_tensor=False)
    return _without_attention_dropout(stack)


@functools.cache
def decoder_stack(n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float) -> nn.Module:
    """``nn.TransformerDecoder`` (post-norm, no final norm) on the meta device."""
    layer = _template(nn.TransformerDecoderLayer, d_model, n_heads, d_ff, dropout, "relu", False)
    with exempt():
        return _without_attention_dropout(nn.TransformerDecoder(layer, n_layers))


def _run_builtin(layer: nn.Module, training: bool, params: dict, *args, **kwargs) -> torch.Tensor:
    layer.train(training)
    return functional_call(layer, params, args, kwargs, strict=True)


class _Layer(nn.Module):
    """What the encoder and the decoder layer share: self-attention (and, in a decoder layer, cross-attention), the
    feed-forward network and one LayerNorm per sublayer, under the chapters' names; the forward pass is the built-in
    layer ``builtin``'s."""

    builtin: type
    cross_attention: bool

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        self.n_heads, self.norm_first = n_heads, norm_first
        with exempt():
            self.self_attn = MultiHeadAttention(d_model, n_heads)
            if self.cross_attention:
                self.cross_attn = MultiHeadAttention(d_model, n_heads)
            self.ff = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
            self.norm1 = nn.LayerNorm(d_model)
            self.norm2 = nn.LayerNorm(d_model)
            if self.cross_attention:
                self.norm3 = nn.LayerNorm(d_model)
            self._builtin_args = (self.builtin, d_model, n_heads, d_ff, dropout, activation, norm_first)


class EncoderLayer(_Layer):
    """Chapter 9's encoder layer: self-attention, then the feed-forward network, each with Add & Norm.

    ``forward(x (B, T, d_model), mask=None) -> (B, T, d_model)``; ``mask`` is boolean, True = may
    attend, broadcasting against (B, n_heads, T, T). Equal to
    ``nn.TransformerEncoderLayer(batch_first=True)`` given the same weights, in both norm orders.
    """

    builtin, cross_attention = nn.TransformerEncoderLayer, False
    # The class's own entry: the forbidden-call watch wraps only the __init__ a class defines itself.
    __init__ = _Layer.__init__

    def forward(self, x: torch.Tensor, mask=None) -> torch.Tensor:
        batch, length, _ = x.shape
        with exempt():
            params = builtin_parameters(self)
            src_mask = _builtin_attention_mask(mask, batch, self.n_heads, length, length, x.device)
            return _run_builtin(_template(*self._builtin_args), self.training, params, x, src_mask=src_mask)


class Encoder(nn.Module):
    """Chapter 9's encoder: ``n_layers`` encoder layers, then a final LayerNorm when ``norm_first``.

    ``forward(x (B, T, d_model), mask=None)`` with chapter 9's mask; ``run(x, key_padding=...)``
    takes PyTorch's (B, T) padding mask instead (True = padding). Both are ``nn.TransformerEncoder``.
    """

    def __init__(
        self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, norm_first: bool = False
    ):
        super().__init__()
        self.n_heads = n_heads
        self._stack_args = (n_layers, d_model, n_heads, d_ff, dropout, norm_first)
        with exempt():
            self.layers = nn.ModuleList(
                EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers)
            )
            self.norm = nn.LayerNorm(d_model) if norm_first else None

    def run(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, key_padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The built-in stack on ``x``: ``mask`` (B * h, T, T) and ``key_padding`` (B, T), True = masked out."""
        with exempt():
            return _run_builtin(
                encoder_stack(*self._stack_args),
                self.training,
                stacked_parameters(self.layers, self.norm),
                x,
                mask=mask,
                src_key_padding_mask=key_padding,
            )

    def forward(self, x: torch.Tensor, mask=None) -> torch.Tensor:
        batch, length, _ = x.shape
        return self.run(x, _builtin_attention_mask(mask, batch, self.n_heads, length, length, x.device))


class DecoderLayer(_Layer):
    """Chapter 10's decoder layer: masked self-attention, cross-attention on ``memory``, the
    feed-forward network, each with Add & Norm.

    ``forward(x (B, T_t, d_model), memory (B, T_s, d_model), tgt_mask=None, memory_mask=None)``;
    ``tgt_mask`` broadcasts against (B, n_heads, T_t, T_t), ``memory_mask`` against
    (B, n_heads, T_t, T_s), True = may attend. Equal to ``nn.TransformerDecoderLayer(batch_first=True)``
    given the same weights, in both norm orders.
    """

    builtin, cross_attention = nn.TransformerDecoderLayer, True
    # The class's own entry: the forbidden-call watch wraps only the __init__ a class defines itself.
    __init__ = _Layer.__init__

    def forward(self, x: torch.Tensor, memory: torch.Tensor, tgt_mask=None, memory_mask=None) -> torch.Tensor:
        batch, tgt_len, _ = x.shape
        src_len = memory.shape[1]
        with exempt():
            params = builtin_parameters(self)
            return _run_builtin(
                _template(*self._builtin_args),
                self.training,
                params,
                x,
                memory,
                tgt_mask=_builtin_attention_mask(tgt_mask, batch, self.n_heads, tgt_len, tgt_len, x.device),
                memory_mask=_builtin_attention_mask(memory_mask, batch, self.n_heads, tgt_len, src_len, x.device),
            )
