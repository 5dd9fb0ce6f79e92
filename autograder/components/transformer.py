"""Chapter 10's encoder-decoder Transformer, on PyTorch's own encoder and decoder stacks.

Lent to the chapters after chapter 10 (decoding, training), never to chapter 10 itself, which
asks for it: the only glue of that exercise it shows is the embedding (token table scaled by
sqrt(d_model), plus the sinusoids), which the chapter's contract spells out anyway. The masks are
PyTorch's own (a causal mask and key-padding masks), the stacks ``nn.TransformerEncoder`` and
``nn.TransformerDecoder`` run with this module's parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..forbidden import exempt
from .layers import DecoderLayer, Encoder, _run_builtin, decoder_stack, stacked_parameters


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """The (max_len, d_model) table of chapter 3: sin on even features, cos on odd ones."""
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class Transformer(nn.Module):
    """An encoder-decoder Transformer (post-norm) with chapter 10's interface.

    ``src`` and ``tgt`` are LongTensors of token ids (B, T_s) and (B, T_t); ``pad_id`` marks
    padding in both. ``encode(src) -> memory (B, T_s, d_model)``; ``decode(tgt, memory, src) ->
    logits (B, T_t, tgt_vocab)``; ``forward(src, tgt) = decode(tgt, encode(src), src)``.
    Parameters: ``src_embed``, ``tgt_embed`` (``nn.Embedding``), ``encoder`` (``Encoder``),
    ``decoder_layers`` (``nn.ModuleList`` of ``DecoderLayer``), ``out_proj`` (``nn.Linear(d_model, tgt_vocab)``).
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int = 128,
        max_len: int = 128,
        dropout: float = 0.0,
        pad_id: int = 0,
    ):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for sinusoidal positions, not {d_model}.")
        self.d_model, self.max_len, self.pad_id = d_model, max_len, pad_id
        self._decoder_args = (n_layers, d_model, n_heads, d_ff, dropout)
        # float64 on the CPU, not a buffer: the positions are not learned, and float32 copies would
        # lose precision when the model is later made float64.
        self._positions = sinusoidal_table(max_len, d_model)
        with exempt():
            self.src_embed = nn.Embedding(src_vocab, d_model)
            self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
            self.dropout = nn.Dropout(dropout)
            self.encoder = Encoder(n_layers, d_model, n_heads, d_ff, dropout)
            self.decoder_layers = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
            self.out_proj = nn.Linear(d_model, tgt_vocab)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(
                f"token ids must be a LongTensor of shape (batch, seq), not {ids.dtype} {tuple(ids.shape)}."
            )
        if ids.size(1) > self.max_len:
            raise ValueError(
                f"these token ids are {ids.size(1)} long, longer than max_len={self.max_len}, "
                "the longest this model has positions for."
            )
        positions = self._positions[: ids.size(1)].to(device=ids.device, dtype=embedding.weight.dtype)
        return self.dropout(embedding(ids) * math.sqrt(self.d_model) + positions)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        with exempt():
            return self.encoder.run(self._embed(self.src_embed, src), key_padding=src == self.pad_id)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        with exempt():
            future = torch.ones(tgt.size(1), tgt.size(1), dtype=torch.bool, device=tgt.device).triu(1)
            hidden = _run_builtin(
                decoder_stack(*self._decoder_args),
                self.training,
                stacked_parameters(self.decoder_layers, None),
                self._embed(self.tgt_embed, tgt),
                memory,
                tgt_mask=future,
                tgt_key_padding_mask=tgt == self.pad_id,
                memory_key_padding_mask=src == self.pad_id,
            )
            return self.out_proj(hidden)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt, memory=self.encode(src), src=src)
