"""A forbidden built-in is caught however it is reached (issue 12, part 2).

Each exercise forbids capabilities (``autograder.forbidden``): the ATen operators of a
built-in. Torch reaches one kernel under many names (a private alias, ``torch.ops.aten``,
``torch._C._nn``, a functional or module twin). Every route below is written as a student
would write it, in the exercise's own cell (or, for a module, in an extra cell that
subclasses the reference and swaps the route into ``forward``), and is rejected with the
usual one sentence naming the built-in:

- visibly: ``check`` on the route (most routes are otherwise correct: with nothing
  forbidden they pass, which proves they are real bypasses);
- in the source: ``scan_forbidden`` finds every route written out (the computed ones are
  left to the runtime watch);
- when graded: a few classes of route submissions go through ``python -m autograder grade``.

Honest alternatives (softmax from exp or logsumexp, a cross entropy on log_softmax,
einsum attention, layer norm from var_mean...) still pass.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import copy_course, env_with_venv, grade_id, read_notebook
from torch import nn

from autograder import check, components, reference
from autograder.errors import CheckFailure
from autograder.exercises import EXERCISES
from autograder.forbidden import capabilities, display_name, scan_forbidden, watch
from autograder.release import filled_notebook


@dataclass
class Route:
    key: str
    source: str  # defines the exercise's name; a module route subclasses the reference (``after``)
    real: bool = True  # with nothing forbidden, the route passes the visible checks
    written: bool = True  # the route is spelled out in the source (not a computed name)
    after: bool = False  # an extra cell after the (reference) solution cell, rather than the cell itself


def route(key, source, **kw) -> Route:
    return Route(key, textwrap.dedent(source).strip() + "\n", **kw)


ZERO_KEY_SCORES = """
            def _scores_from_weights(q, k, attend):
                # one extra key of zeros scores exactly 0: its weight gives the row's normaliser
                k0 = torch.cat([k, torch.zeros_like(k[..., :1, :])], dim=-2)
                _, w = attend(q, k0, k0)
                return torch.log(w[..., :-1]) - torch.log(w[..., -1:])
"""

ROUTES = {
    "rnn_encode": [
        route(
            "aten_cell",
            """
            import torch
            def rnn_encode(x, W_xh, W_hh, b_h):
                h, outputs = x.new_zeros(W_hh.shape[0]), []
                for x_t in x:
                    h = torch.ops.aten.rnn_tanh_cell(x_t[None], h[None], W_xh.T, W_hh.T, b_h)[0]
                    outputs.append(h)
                return torch.stack(outputs), h
        """,
        ),
        route(
            "vf_cell",
            """
            import torch
            def rnn_encode(x, W_xh, W_hh, b_h):
                h, outputs = x.new_zeros(W_hh.shape[0]), []
                for x_t in x:
                    h = torch._VF.rnn_tanh_cell(x_t[None], h[None], W_xh.T, W_hh.T, b_h)[0]
                    outputs.append(h)
                return torch.stack(outputs), h
        """,
        ),
        route(
            "aten_sequence",
            """
            import torch
            def rnn_encode(x, W_xh, W_hh, b_h):
                params = [W_xh.T, W_hh.T, b_h, torch.zeros_like(b_h)]
                h0 = x.new_zeros(1, 1, W_hh.shape[0])
                out, h = torch.ops.aten.rnn_tanh.input(x[:, None], h0, params, True, 1, 0.0, False, False, False)
                return out[:, 0], h[0, 0]
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def rnn_encode(x, W_xh, W_hh, b_h):
                rnn = torch.nn.RNN(*W_xh.shape).to(x)
                weights = {"weight_ih_l0": W_xh.T, "weight_hh_l0": W_hh.T, "bias_ih_l0": b_h,
                           "bias_hh_l0": torch.zeros_like(b_h)}
                out, h = torch.func.functional_call(rnn, weights, (x,))
                return out, h[0]
        """,
        ),
        route(
            "computed_name",
            """
            import torch
            _cell = getattr(torch.ops.aten, "rnn_" + "tanh_cell")
            def rnn_encode(x, W_xh, W_hh, b_h):
                h, outputs = x.new_zeros(W_hh.shape[0]), []
                for x_t in x:
                    h = _cell(x_t[None], h[None], W_xh.T, W_hh.T, b_h)[0]
                    outputs.append(h)
                return torch.stack(outputs), h
        """,
            written=False,
        ),
    ],
    "one_hot": [
        route(
            "c_nn",
            """
            import torch
            def one_hot(ids, vocab_size):
                return torch._C._nn.one_hot(ids, vocab_size).float()
        """,
        ),
        route(
            "aten",
            """
            import torch
            def one_hot(ids, vocab_size):
                return torch.ops.aten.one_hot(ids, vocab_size).float()
        """,
        ),
        route(
            "aten_overload_by_getattr",
            """
            import torch
            def one_hot(ids, vocab_size):
                return getattr(torch.ops.aten, "one_hot").default(ids, vocab_size).to(torch.float32)
        """,
        ),
        route(
            "imported_under_another_name",
            """
            import torch
            from torch.nn.functional import one_hot as spread
            def one_hot(ids, vocab_size):
                return spread(ids, vocab_size).float()
        """,
        ),
    ],
    "embedding_lookup": [
        route(
            "private_alias",
            """
            import torch
            def embedding_lookup(ids, weight):
                return torch.embedding(weight, ids)
        """,
        ),
        route(
            "aten",
            """
            import torch
            def embedding_lookup(ids, weight):
                return torch.ops.aten.embedding(weight, ids)
        """,
        ),
        route(
            "embedding_bag",
            """
            import torch
            import torch.nn.functional as F
            def embedding_lookup(ids, weight):
                bags = F.embedding_bag(ids.reshape(-1, 1), weight, mode="sum")
                return bags.reshape(*ids.shape, weight.shape[-1])
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def embedding_lookup(ids, weight):
                table = torch.nn.Embedding(*weight.shape).to(weight)
                return torch.func.functional_call(table, {"weight": weight}, (ids,))
        """,
        ),
    ],
    "cosine_similarity_matrix": [
        route(
            "torch_function",
            """
            import torch
            def cosine_similarity_matrix(E):
                return torch.cosine_similarity(E[:, None, :], E[None, :, :], dim=-1)
        """,
        ),
        route(
            "aten",
            """
            import torch
            def cosine_similarity_matrix(E):
                return torch.ops.aten.cosine_similarity(E[:, None, :], E[None, :, :], -1)
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def cosine_similarity_matrix(E):
                return torch.nn.CosineSimilarity(dim=-1)(E[:, None, :], E[None, :, :])
        """,
        ),
        route(
            "embedding_loss",
            """
            import torch
            import torch.nn.functional as F
            def cosine_similarity_matrix(E):
                n, d = E.shape
                a, b = E[:, None, :].expand(n, n, d).reshape(-1, d), E[None, :, :].expand(n, n, d).reshape(-1, d)
                loss = F.cosine_embedding_loss(a, b, torch.ones(n * n, dtype=E.dtype, device=E.device), reduction="none")
                return (1 - loss).reshape(n, n)
        """,
        ),
    ],
    "softmax": [
        route(
            "private_alias",
            """
            import torch
            def softmax(x, dim=-1):
                return torch._softmax(x, dim, False)
        """,
        ),
        route(
            "aten",
            """
            import torch
            def softmax(x, dim=-1):
                return torch.ops.aten._softmax(x, dim, False)
        """,
        ),
        route(
            "aten_log_softmax",
            """
            import torch
            def softmax(x, dim=-1):
                return torch.ops.aten._log_softmax.default(x, dim, False).exp()
        """,
        ),
        route(
            "special",
            """
            import torch
            def softmax(x, dim=-1):
                return torch._C._special.special_softmax(x, dim)
        """,
        ),
        route(
            "softmin",
            """
            import torch.nn.functional as F
            def softmax(x, dim=-1):
                return F.softmin(-x, dim)
        """,
        ),
        route(
            "safe_softmax",
            """
            import torch
            def softmax(x, dim=-1):
                return torch._safe_softmax(x, dim)
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def softmax(x, dim=-1):
                return torch.nn.Softmax(dim)(x)
        """,
        ),
        route(
            "sparse",
            """
            import torch
            def softmax(x, dim=-1):
                return torch.sparse.softmax(x.to_sparse(), dim).to_dense()
        """,
            real=False,
        ),
        route(
            "getattr_constant",
            """
            import torch
            def softmax(x, dim=-1):
                return getattr(torch.ops.aten, "_softmax")(x, dim, False)
        """,
        ),
        route(
            "computed_name",
            """
            import torch
            _f = getattr(torch, "_soft" + "max")
            def softmax(x, dim=-1):
                return _f(x, dim, False)
        """,
            written=False,
        ),
    ],
    "attention_scores": [
        route(
            "math_kernel",
            ZERO_KEY_SCORES
            + """
            import torch
            def attention_scores(q, k):
                return _scores_from_weights(q, k, torch._scaled_dot_product_attention_math)
        """,
            real=False,
        ),
        route(
            "aten_math_kernel",
            ZERO_KEY_SCORES
            + """
            import torch
            def attention_scores(q, k):
                return _scores_from_weights(q, k, torch.ops.aten._scaled_dot_product_attention_math)
        """,
            real=False,
        ),
        route(
            "flash_kernel",
            """
            import torch
            def attention_scores(q, k):
                q4, k4 = q.reshape(-1, 1, *q.shape[-2:]), k.reshape(-1, 1, *k.shape[-2:])
                eye = torch.eye(k.shape[-2], dtype=q.dtype, device=q.device).expand(q4.shape[0], 1, -1, -1)
                weights, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q4, k4, eye)
                return (torch.log(weights) + lse[..., None]).reshape(*q.shape[:-1], k.shape[-2])
        """,
            real=False,
        ),
    ],
    "scaled_dot_product_attention": [
        route(
            "math_kernel",
            """
            import torch
            def scaled_dot_product_attention(q, k, v, mask=None):
                return torch._scaled_dot_product_attention_math(q, k, v, attn_mask=mask)
        """,
            real=False,
        ),
        route(
            "aten_math_kernel",
            """
            import torch
            def scaled_dot_product_attention(q, k, v, mask=None):
                return torch.ops.aten._scaled_dot_product_attention_math.default(q, k, v, mask)
        """,
            real=False,
        ),
        route(
            "c_nn",
            """
            import math
            import torch
            def scaled_dot_product_attention(q, k, v, mask=None):
                scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                weights = torch.exp(scores - scores.amax(-1, keepdim=True))
                weights = weights / weights.sum(-1, keepdim=True)
                return torch._C._nn.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights
        """,
            real=False,
        ),
        route(
            "flash_kernel",
            """
            import torch
            def scaled_dot_product_attention(q, k, v, mask=None):
                q4, k4, v4 = (t.reshape(-1, 1, *t.shape[-2:]) for t in (q, k, v))
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q4, k4, v4)
                scores = (q4 @ k4.transpose(-2, -1)) / q.shape[-1] ** 0.5
                weights = torch.exp(scores - lse[..., None])
                return out.reshape(*q.shape[:-1], v.shape[-1]), weights.reshape(*q.shape[:-1], k.shape[-2])
        """,
            real=False,
        ),
        route(
            "computed_name",
            """
            import torch
            _attend = getattr(torch, "_scaled_dot_product_" + "attention_math")
            def scaled_dot_product_attention(q, k, v, mask=None):
                return _attend(q, k, v, attn_mask=mask)
        """,
            real=False,
            written=False,
        ),
    ],
    "SelfAttention": [
        route(
            "math_kernel",
            """
            import torch
            class SelfAttention(SelfAttention):
                def forward(self, x, mask=None):
                    return torch._scaled_dot_product_attention_math(self.W_q(x), self.W_k(x), self.W_v(x), attn_mask=mask)
        """,
            real=False,
            after=True,
        ),
        route(
            "module_twin",
            """
            import torch
            class SelfAttention(SelfAttention):
                def forward(self, x, mask=None):
                    attention = torch.nn.MultiheadAttention(self.W_q.out_features, 1, bias=False, batch_first=True)
                    return attention(self.W_q(x), self.W_k(x), self.W_v(x))
        """,
            real=False,
            after=True,
        ),
        route(
            "functional_twin",
            """
            import torch
            import torch.nn.functional as F
            class SelfAttention(SelfAttention):
                def forward(self, x, mask=None):
                    q = self.W_q(x).transpose(0, 1)
                    d = q.shape[-1]
                    eye = torch.eye(d, dtype=q.dtype, device=q.device)
                    out, weights = F.multi_head_attention_forward(
                        q, q, q, d, 1, torch.cat([eye, eye, eye]), None, None, None, False, 0.0, eye, None)
                    return out.transpose(0, 1), weights
        """,
            real=False,
            after=True,
        ),
        route(
            "native_multi_head",
            """
            import torch
            class SelfAttention(SelfAttention):
                def forward(self, x, mask=None):
                    q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
                    d = q.shape[-1]
                    eye = torch.eye(d, dtype=q.dtype, device=q.device)
                    return torch._native_multi_head_attention(q, k, v, d, 1, torch.cat([eye, eye, eye]),
                                                              q.new_zeros(3 * d), eye, q.new_zeros(d))
        """,
            real=False,
            after=True,
        ),
    ],
    "CrossAttention": [
        route(
            "math_kernel",
            """
            import torch
            class CrossAttention(CrossAttention):
                def forward(self, x, memory, mask=None):
                    q, k, v = self.W_q(x), self.W_k(memory), self.W_v(memory)
                    return torch.ops.aten._scaled_dot_product_attention_math(q, k, v, mask)
        """,
            real=False,
            after=True,
        ),
        route(
            "flash_kernel",
            """
            import torch
            class CrossAttention(CrossAttention):
                def forward(self, x, memory, mask=None):
                    q, k, v = self.W_q(x)[:, None], self.W_k(memory)[:, None], self.W_v(memory)[:, None]
                    out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
                    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, -1)
                    return out[:, 0], weights[:, 0]
        """,
            real=False,
            after=True,
        ),
        route(
            "module_twin",
            """
            import torch
            class CrossAttention(CrossAttention):
                def forward(self, x, memory, mask=None):
                    d = self.W_q.out_features
                    attention = torch.nn.MultiheadAttention(d, 1, bias=False, batch_first=True)
                    return attention(self.W_q(x), self.W_k(memory), self.W_v(memory))
        """,
            real=False,
            after=True,
        ),
    ],
    "MultiHeadAttention": [
        route(
            "functional_twin",
            """
            import torch
            import torch.nn.functional as F
            class MultiHeadAttention(MultiHeadAttention):
                def forward(self, query, key, value, mask=None):
                    t = lambda a: a.transpose(0, 1)
                    out, weights = F.multi_head_attention_forward(
                        t(query), t(key), t(value), self.q_proj.in_features, self.n_heads, None, None, None, None,
                        False, 0.0, self.out_proj.weight, self.out_proj.bias, use_separate_proj_weight=True,
                        q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight,
                        v_proj_weight=self.v_proj.weight, average_attn_weights=False)
                    return t(out), weights
        """,
            real=False,
            after=True,
        ),
        route(
            "native_multi_head",
            """
            import torch
            class MultiHeadAttention(MultiHeadAttention):
                def forward(self, query, key, value, mask=None):
                    weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
                    bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
                    return torch._native_multi_head_attention(
                        query, key, value, self.q_proj.in_features, self.n_heads, weight, bias,
                        self.out_proj.weight, self.out_proj.bias, need_weights=True, average_attn_weights=False)
        """,
            real=False,
            after=True,
        ),
        route(
            "math_kernel_per_head",
            """
            import torch
            class MultiHeadAttention(MultiHeadAttention):
                def forward(self, query, key, value, mask=None):
                    split = lambda a: a.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)
                    q, k, v = split(self.q_proj(query)), split(self.k_proj(key)), split(self.v_proj(value))
                    out, weights = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, mask)
                    return self.out_proj(out.transpose(1, 2).flatten(-2)), weights
        """,
            real=False,
            after=True,
        ),
        route(
            "module_twin",
            """
            import torch
            class MultiHeadAttention(MultiHeadAttention):
                def forward(self, query, key, value, mask=None):
                    attention = torch.nn.MultiheadAttention(self.q_proj.in_features, self.n_heads, batch_first=True)
                    return attention(query, key, value, average_attn_weights=False)
        """,
            real=False,
            after=True,
        ),
        route(
            "lent_component",
            """
            from autograder import components
            class MultiHeadAttention(components.MultiHeadAttention):
                pass
        """,
            after=True,
            real=False,
        ),
    ],
    "masked_softmax": [
        route(
            "masked_kernel",
            """
            import torch
            def masked_softmax(scores, mask):
                return torch._masked_softmax(scores, (~mask).expand_as(scores), -1)
        """,
            real=False,
        ),
        route(
            "safe_softmax",
            """
            import torch
            def masked_softmax(scores, mask):
                return torch._safe_softmax(scores.masked_fill(~mask, float("-inf")), -1)
        """,
            real=False,
        ),
        route(
            "aten",
            """
            import torch
            def masked_softmax(scores, mask):
                return torch.ops.aten._softmax(scores.masked_fill(~mask, -1e30), -1, False) * mask
        """,
            real=False,
        ),
        route(
            "special",
            """
            import torch
            def masked_softmax(scores, mask):
                return torch._C._special.special_softmax(scores.masked_fill(~mask, -1e30), -1) * mask
        """,
            real=False,
        ),
        route(
            "aten_log_softmax",
            """
            import torch
            def masked_softmax(scores, mask):
                return torch.ops.aten._log_softmax(scores.masked_fill(~mask, -1e30), -1, False).exp() * mask
        """,
            real=False,
        ),
    ],
    "layer_norm": [
        route(
            "private_alias",
            """
            import torch
            def layer_norm(x, weight, bias, eps=1e-5):
                return torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)[0]
        """,
        ),
        route(
            "aten",
            """
            import torch
            def layer_norm(x, weight, bias, eps=1e-5):
                return torch.ops.aten.native_layer_norm(x, [x.shape[-1]], weight, bias, eps)[0]
        """,
        ),
        route(
            "group_norm",
            """
            import torch
            def layer_norm(x, weight, bias, eps=1e-5):
                d = x.shape[-1]
                return torch.group_norm(x.reshape(-1, 1, d), 1, eps=eps).reshape(x.shape) * weight + bias
        """,
        ),
        route(
            "rms_norm",
            """
            import torch
            def layer_norm(x, weight, bias, eps=1e-5):
                return torch.rms_norm(x - x.mean(-1, keepdim=True), (x.shape[-1],), weight, eps) + bias
        """,
        ),
        route(
            "batch_norm",
            """
            import torch.nn.functional as F
            def layer_norm(x, weight, bias, eps=1e-5):
                rows = x.reshape(-1, x.shape[-1]).T
                return F.batch_norm(rows, None, None, training=True, eps=eps).T.reshape(x.shape) * weight + bias
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def layer_norm(x, weight, bias, eps=1e-5):
                norm = torch.nn.LayerNorm(x.shape[-1], eps=eps).to(x)
                return torch.func.functional_call(norm, {"weight": weight, "bias": bias}, (x,))
        """,
        ),
    ],
    "PositionwiseFeedForward": [
        route(
            "lent_component",
            """
            from autograder import components
            class PositionwiseFeedForward(components.PositionwiseFeedForward):
                pass
        """,
            after=True,
            real=False,
        ),
    ],
    "EncoderLayer": [
        route(
            "module_twin",
            """
            import torch
            class EncoderLayer(EncoderLayer):
                def forward(self, x, mask=None):
                    layer = torch.nn.TransformerEncoderLayer(x.shape[-1], 1, 4, dropout=0.0, batch_first=True)
                    return layer(x)
        """,
            real=False,
            after=True,
        ),
        route(
            "fused_kernel",
            """
            import torch
            class EncoderLayer(EncoderLayer):
                def forward(self, x, mask=None):
                    d, zeros = x.shape[-1], x.new_zeros
                    return torch._transformer_encoder_layer_fwd(
                        x, d, 1, zeros(3 * d, d), zeros(3 * d), zeros(d, d), zeros(d), False, False, 1e-5,
                        zeros(d) + 1, zeros(d), zeros(d) + 1, zeros(d), zeros(4, d), zeros(4), zeros(d, 4), zeros(d))
        """,
            real=False,
            after=True,
        ),
        route(
            "inside_a_transformer",
            """
            import torch
            class EncoderLayer(EncoderLayer):
                def forward(self, x, mask=None):
                    model = torch.nn.Transformer(x.shape[-1], 1, 1, 1, 8, dropout=0.0, batch_first=True)
                    return model.encoder.layers[0](x)
        """,
            real=False,
            after=True,
        ),
        route(
            "fused_attention",
            """
            import torch.nn.functional as F
            class EncoderLayer(EncoderLayer):
                def forward(self, x, mask=None):
                    return self.norm1(x + F.scaled_dot_product_attention(x, x, x))
        """,
            real=False,
            after=True,
        ),
        route(
            "lent_component",
            """
            from autograder import components
            class EncoderLayer(components.EncoderLayer):
                pass
        """,
            real=False,
            after=True,
        ),
    ],
    "Encoder": [
        route(
            "module_twin",
            """
            import torch
            class Encoder(Encoder):
                def forward(self, x, mask=None):
                    layer = torch.nn.TransformerEncoderLayer(x.shape[-1], 1, 4, dropout=0.0, batch_first=True)
                    return torch.nn.TransformerEncoder(layer, len(self.layers), enable_nested_tensor=False)(x)
        """,
            real=False,
            after=True,
        ),
        route(
            "inside_a_transformer",
            """
            import torch
            class Encoder(Encoder):
                def forward(self, x, mask=None):
                    model = torch.nn.Transformer(x.shape[-1], 1, len(self.layers), 1, 8, dropout=0.0, batch_first=True)
                    return model.encoder(x)
        """,
            real=False,
            after=True,
        ),
        route(
            "subclass_of_the_twin",
            """
            import torch
            class Stack(torch.nn.TransformerEncoder):
                pass
            class Encoder(Encoder):
                def forward(self, x, mask=None):
                    layer = torch.nn.TransformerEncoderLayer(x.shape[-1], 1, 4, dropout=0.0, batch_first=True)
                    return Stack(layer, len(self.layers), enable_nested_tensor=False)(x)
        """,
            real=False,
            after=True,
        ),
        route(
            "lent_component",
            """
            from autograder import components
            class Encoder(components.Encoder):
                pass
        """,
            real=False,
            after=True,
        ),
    ],
    "DecoderLayer": [
        route(
            "module_twin",
            """
            import torch
            class DecoderLayer(DecoderLayer):
                def forward(self, x, memory, tgt_mask=None, memory_mask=None):
                    layer = torch.nn.TransformerDecoderLayer(x.shape[-1], 1, 4, dropout=0.0, batch_first=True)
                    return layer(x, memory)
        """,
            real=False,
            after=True,
        ),
        route(
            "stack_twin",
            """
            import torch
            class DecoderLayer(DecoderLayer):
                def forward(self, x, memory, tgt_mask=None, memory_mask=None):
                    layer = torch.nn.TransformerDecoderLayer(x.shape[-1], 1, 4, dropout=0.0, batch_first=True)
                    return torch.nn.TransformerDecoder(layer, 1)(x, memory)
        """,
            real=False,
            after=True,
        ),
        route(
            "inside_a_transformer",
            """
            import torch
            class DecoderLayer(DecoderLayer):
                def forward(self, x, memory, tgt_mask=None, memory_mask=None):
                    model = torch.nn.Transformer(x.shape[-1], 1, 1, 1, 8, dropout=0.0, batch_first=True)
                    return model.decoder.layers[0](x, memory)
        """,
            real=False,
            after=True,
        ),
        route(
            "fused_attention",
            """
            import torch
            class DecoderLayer(DecoderLayer):
                def forward(self, x, memory, tgt_mask=None, memory_mask=None):
                    return x + torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                        x[:, None], memory[:, None], memory[:, None])[0][:, 0]
        """,
            real=False,
            after=True,
        ),
        route(
            "lent_component",
            """
            from autograder import components
            class DecoderLayer(components.DecoderLayer):
                pass
        """,
            real=False,
            after=True,
        ),
    ],
    "Transformer": [
        route(
            "module_twin",
            """
            import torch
            class Transformer(Transformer):
                def forward(self, src, tgt):
                    torch.nn.Transformer(8, 1, 1, 1, 8, batch_first=True)
                    return super().forward(src, tgt)
        """,
            real=False,
            after=True,
        ),
        route(
            "module_path_alias",
            """
            from torch.nn.modules.transformer import Transformer as Builtin
            class Transformer(Transformer):
                def forward(self, src, tgt):
                    Builtin(8, 1, 1, 1, 8, batch_first=True)
                    return super().forward(src, tgt)
        """,
            real=False,
            after=True,
        ),
        route(
            "subclass_of_the_twin",
            """
            import torch
            class Mine(torch.nn.Transformer):
                pass
            class Transformer(Transformer):
                def forward(self, src, tgt):
                    Mine(8, 1, 1, 1, 8, batch_first=True)
                    return super().forward(src, tgt)
        """,
            real=False,
            after=True,
        ),
        route(
            "lent_component",
            """
            from autograder import components
            class Transformer(components.Transformer):
                pass
        """,
            real=False,
            after=True,
        ),
    ],
    "label_smoothed_cross_entropy": [
        route(
            "nll_loss",
            """
            import torch
            import torch.nn.functional as F
            def label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0):
                log_probs = torch.log_softmax(logits, dim=-1)
                keep = target != ignore_index
                nll = F.nll_loss(log_probs, target, ignore_index=ignore_index)
                return (1 - smoothing) * nll - smoothing * log_probs.mean(-1)[keep].mean()
        """,
        ),
        route(
            "c_nn_nll_loss",
            """
            import torch
            def label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0):
                log_probs = torch.log_softmax(logits, dim=-1)
                keep = target != ignore_index
                nll = torch._C._nn.nll_loss_nd(log_probs, target, None, 1, ignore_index)
                return (1 - smoothing) * nll - smoothing * log_probs.mean(-1)[keep].mean()
        """,
        ),
        route(
            "aten_nll_loss",
            """
            import torch
            def label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0):
                log_probs = torch.log_softmax(logits, dim=-1)
                keep = target != ignore_index
                nll = torch.ops.aten.nll_loss_forward(log_probs, target, None, 1, ignore_index)[0]
                return (1 - smoothing) * nll - smoothing * log_probs.mean(-1)[keep].mean()
        """,
        ),
        route(
            "c_nn_cross_entropy",
            """
            import torch
            def label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0):
                return torch._C._nn.cross_entropy_loss(logits, target, None, 1, ignore_index, smoothing)
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0):
                loss = torch.nn.CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=smoothing)
                return loss(logits, target)
        """,
        ),
    ],
    "tiled_attention": [
        route(
            "math_kernel",
            """
            import torch
            def tiled_attention(q, k, v, block_size):
                return torch._scaled_dot_product_attention_math(q, k, v)[0]
        """,
            real=False,
        ),
        route(
            "flash_kernel",
            """
            import torch
            def tiled_attention(q, k, v, block_size):
                q4, k4, v4 = (t.reshape(-1, 1, *t.shape[-2:]) for t in (q, k, v))
                out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q4, k4, v4)[0]
                return out.reshape(*q.shape[:-1], v.shape[-1])
        """,
            real=False,
        ),
        route(
            "c_nn",
            """
            import torch
            def tiled_attention(q, k, v, block_size):
                return torch._C._nn.scaled_dot_product_attention(q, k, v)
        """,
            real=False,
        ),
    ],
    "patchify": [
        route(
            "functional",
            """
            import torch.nn.functional as F
            def patchify(images, patch_size):
                return F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)
        """,
            real=False,
        ),
        route(
            "c_nn",
            """
            import torch
            def patchify(images, patch_size):
                p = (patch_size, patch_size)
                return torch._C._nn.im2col(images, p, (1, 1), (0, 0), p).transpose(1, 2)
        """,
            real=False,
        ),
        route(
            "aten",
            """
            import torch
            def patchify(images, patch_size):
                p = [patch_size, patch_size]
                return torch.ops.aten.im2col(images, p, [1, 1], [0, 0], p).transpose(1, 2)
        """,
            real=False,
        ),
        route(
            "tensor_method",
            """
            def patchify(images, patch_size):
                B, C, H, W = images.shape
                p = patch_size
                patches = images.unfold(2, p, p).unfold(3, p, p)
                return patches.permute(0, 2, 3, 1, 4, 5).reshape(B, (H // p) * (W // p), C * p * p)
        """,
        ),
        route(
            "convolution",
            """
            import torch
            import torch.nn.functional as F
            def patchify(images, patch_size):
                C, p = images.shape[1], patch_size
                picks = torch.eye(C * p * p, dtype=images.dtype, device=images.device).reshape(C * p * p, C, p, p)
                return F.conv2d(images, picks, stride=p).flatten(2).transpose(1, 2)
        """,
        ),
        route(
            "module_twin",
            """
            import torch
            def patchify(images, patch_size):
                return torch.nn.Unfold(patch_size, stride=patch_size)(images).transpose(1, 2)
        """,
            real=False,
        ),
    ],
    "PatchEmbedding": [
        route(
            "functional_conv",
            """
            import torch.nn.functional as F
            class PatchEmbedding(PatchEmbedding):
                def forward(self, images):
                    kernel = self.proj.weight.reshape(self.proj.out_features, images.shape[1], self.patch_size, -1)
                    patches = F.conv2d(images, kernel, self.proj.bias, stride=self.patch_size).flatten(2).transpose(1, 2)
                    cls = self.cls_token.expand(images.shape[0], -1, -1)
                    return torch.cat([cls, patches], dim=1) + self.pos_embedding
        """,
            real=False,
            after=True,
        ),
        route(
            "aten_convolution",
            """
            import torch
            class PatchEmbedding(PatchEmbedding):
                def forward(self, images):
                    p = self.patch_size
                    kernel = self.proj.weight.reshape(self.proj.out_features, images.shape[1], p, p)
                    out = torch.ops.aten.convolution(images, kernel, self.proj.bias, [p, p], [0, 0], [1, 1], False, [0, 0], 1)
                    patches = out.flatten(2).transpose(1, 2)
                    return torch.cat([self.cls_token.expand(images.shape[0], -1, -1), patches], 1) + self.pos_embedding
        """,
            real=False,
            after=True,
        ),
        route(
            "private_alias",
            """
            import torch
            class PatchEmbedding(PatchEmbedding):
                def forward(self, images):
                    p = self.patch_size
                    kernel = self.proj.weight.reshape(self.proj.out_features, images.shape[1], p, p)
                    patches = torch._convolution(images, kernel, self.proj.bias, [p, p], [0, 0], [1, 1], False, [0, 0], 1,
                                                 False, False, True, True).flatten(2).transpose(1, 2)
                    return torch.cat([self.cls_token.expand(images.shape[0], -1, -1), patches], 1) + self.pos_embedding
        """,
            real=False,
            after=True,
        ),
        route(
            "module_twin",
            """
            import torch
            class PatchEmbedding(PatchEmbedding):
                def forward(self, images):
                    conv = torch.nn.Conv2d(images.shape[1], self.proj.out_features, self.patch_size, self.patch_size)
                    return conv(images)
        """,
            real=False,
            after=True,
        ),
        route(
            "unfold",
            """
            import torch.nn.functional as F
            class PatchEmbedding(PatchEmbedding):
                def forward(self, images):
                    patches = self.proj(F.unfold(images, self.patch_size, stride=self.patch_size).transpose(1, 2))
                    return torch.cat([self.cls_token.expand(images.shape[0], -1, -1), patches], 1) + self.pos_embedding
        """,
            real=False,
            after=True,
        ),
    ],
}

CASES = [(name, r) for name, routes in ROUTES.items() for r in routes]


def test_every_exercise_with_a_forbidden_list_has_routes():
    forbidding = {name for name, exercise in EXERCISES.items() if exercise.forbidden}
    # train_reversal_model's routes (the built-in losses a training loop could call) are tried in
    # tests/test_messages_late.py, on a model that needs no training.
    assert forbidding - {"train_reversal_model"} == set(ROUTES)
    for name, routes in ROUTES.items():
        torch_routes = [r for r in routes if r.key != "lent_component"]
        assert len(torch_routes) >= 3 or not torch_routes, f"{name}: at least three routes where torch has them"


def test_every_operator_of_a_capability_is_an_aten_operator():
    """A misspelt operator would silently forbid nothing."""
    for exercise in EXERCISES.values():
        for capability in capabilities(exercise.forbidden):
            missing = [op for op in capability.operators if not hasattr(torch.ops.aten, op)]
            assert not missing, f"{capability.name}: not ATen operators of torch {torch.__version__}: {missing}"


def namespace(name: str) -> dict:
    """What a route's source sees: the reference of the exercise's assignment (its earlier definitions)."""
    return dict(vars(reference.load(EXERCISES[name].assignment)), __name__=f"route_{name}")


def build(name: str, r: Route):
    scope = namespace(name)
    exec(compile(r.source, f"<route {name}/{r.key}>", "exec"), scope)
    return scope[name]


def allowed_names(exercise) -> set[str]:
    """The built-ins the sentence may name: a capability, or one of its functions and classes named as called."""
    names = set()
    for capability in capabilities(exercise.forbidden):
        names |= {capability.name} | {display_name(f) for f in capability.functions + capability.classes}
    return names


def assert_forbidden_sentence(exercise, message: str) -> None:
    why = f": {re.escape(exercise.why_forbidden)}" if exercise.why_forbidden else ""
    match = re.fullmatch(
        rf"`{exercise.name}` uses (\S+)( \((called as|through the operator|written) .*\))?, "
        rf"which this exercise asks you not to use{why}\.",
        message,
    )
    assert match, message
    assert match.group(1) in allowed_names(exercise), message


@pytest.mark.parametrize("name,r", CASES, ids=[f"{n}-{r.key}" for n, r in CASES])
def test_a_route_around_the_name_is_rejected_visibly(name, r, monkeypatch):
    exercise = EXERCISES[name]
    impl = build(name, r)
    with pytest.raises(CheckFailure) as failure:
        check(name, impl, device="cpu")
    assert_forbidden_sentence(exercise, str(failure.value))
    if r.real:  # the route is a real bypass: with nothing forbidden, it passes
        monkeypatch.setattr(exercise, "forbidden", ())
        check(name, impl, device="cpu")


def cells_with(name: str, r: Route) -> list[tuple[int, str, str]]:
    """The student cells of a notebook whose answer to ``name`` takes this route."""
    solution = f"{name} = None  # the reference's definition stands here\n"
    if r.after:
        return [(3, name, solution), (4, "", r.source)]
    return [(3, name, r.source)]


@pytest.mark.parametrize(
    "name,r", [(n, r) for n, r in CASES if r.written], ids=[f"{n}-{r.key}" for n, r in CASES if r.written]
)
def test_a_route_written_in_the_source_is_found(name, r):
    found = scan_forbidden(cells_with(name, r), EXERCISES[name])
    assert found, f"{name}/{r.key} not found in the source"
    assert_forbidden_sentence(
        EXERCISES[name],
        f"`{name}` uses {found}, which this exercise asks you not to use"
        + (f": {EXERCISES[name].why_forbidden}" if EXERCISES[name].why_forbidden else "")
        + ".",
    )


# --- the source scan decides on code, never on words -----------------------------------------------

HONEST_SOFTMAX = '''
def softmax(x, dim=-1):
    """Like torch.softmax or torch.ops.aten._softmax, but written by hand."""
    # not torch._softmax, not getattr(torch.ops.aten, "_softmax")
    shifted = x - x.amax(dim, keepdim=True)
    e = torch.exp(shifted)
    label = "_softmax"
    return e / e.sum(dim, keepdim=True)
'''


def test_comments_docstrings_and_strings_are_not_routes():
    assert scan_forbidden([(3, "softmax", "import torch\n" + HONEST_SOFTMAX)], EXERCISES["softmax"]) is None


def test_a_scratch_comparison_with_the_builtin_is_not_the_answer():
    cells = [
        (3, "softmax", "import torch\n" + HONEST_SOFTMAX + "print(torch.allclose(softmax(x), torch.softmax(x, -1)))\n"),
        (5, "", "x = torch.randn(3)\nprint(torch.ops.aten._softmax(x, -1, False) - softmax(x))\n"),
    ]
    assert scan_forbidden(cells, EXERCISES["softmax"]) is None


def test_a_helper_is_scanned_only_if_the_answer_uses_it():
    helper = "import torch\ndef fast(x, dim):\n    return torch._softmax(x, dim, False)\n"
    unused = [(3, "softmax", HONEST_SOFTMAX), (4, "", helper)]
    used = [(3, "softmax", "def softmax(x, dim=-1):\n    return fast(x, dim)\n"), (4, "", helper)]
    assert scan_forbidden(unused, EXERCISES["softmax"]) is None
    assert scan_forbidden(used, EXERCISES["softmax"]) == "torch.softmax (written `torch._softmax`)"


def test_another_exercise_and_later_cells_are_not_scanned():
    """SelfAttention may use torch.softmax; a cell after the test cell is not what was graded."""
    other = (6, "SelfAttention", "import torch\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n")
    later = (9, "", "def softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n")
    assert scan_forbidden([(3, "softmax", HONEST_SOFTMAX), other, later], EXERCISES["softmax"], before=8) is None
    assert scan_forbidden([(3, "softmax", HONEST_SOFTMAX), later], EXERCISES["softmax"]) is not None


def test_what_is_checked_is_the_last_definition():
    imported = (2, "", "from torch.nn.functional import softmax\n")
    assert scan_forbidden([imported, (3, "softmax", HONEST_SOFTMAX)], EXERCISES["softmax"]) is None
    assert scan_forbidden([(3, "softmax", HONEST_SOFTMAX), imported], EXERCISES["softmax"]) is not None


def test_a_students_own_attribute_is_not_torchs():
    source = (
        "import torch\nclass Helper:\n    def __init__(self):\n        self.softmax = None\n"
        "def masked_softmax(scores, mask):\n    h = Helper()\n    return h\n"
    )
    assert scan_forbidden([(3, "masked_softmax", source)], EXERCISES["masked_softmax"]) is None


def test_torchs_own_python_decompositions_are_found_in_the_source():
    """torch._refs and torch._decomp build the built-ins from primitive operators, which the runtime
    watch cannot tell from a student's own; written in the source, they are found."""
    for written in ("torch._refs.softmax(x, dim)", "torch._decomp.decompositions._softmax(x, dim, False)"):
        source = f"import torch\ndef softmax(x, dim=-1):\n    return {written}\n"
        assert scan_forbidden([(3, "softmax", source)], EXERCISES["softmax"]).startswith("torch.softmax (written")


@pytest.mark.parametrize("assignment", sorted({e.assignment for e in EXERCISES.values() if e.forbidden}))
def test_the_reference_solutions_use_nothing_forbidden(assignment):
    nb = read_notebook(reference.notebook_path(assignment))
    cells = [
        (i, c.metadata.get("nbgrader", {}).get("grade_id", ""), c.source)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
    ]
    for exercise in EXERCISES.values():
        if exercise.assignment == assignment and exercise.forbidden:
            assert scan_forbidden(cells, exercise) is None, exercise.name


# --- the watch: what the capabilities must not catch ---------------------------------------------


def test_decompositions_of_allowed_code_are_not_forbidden():
    logits, target = torch.randn(5, 7, requires_grad=True), torch.randint(7, (5,))
    x = torch.randn(2, 3, 8, requires_grad=True)
    exercise_caps = {
        name: EXERCISES[name].forbidden
        for name in ("label_smoothed_cross_entropy", "softmax", "SelfAttention", "patchify", "layer_norm")
    }
    with watch(exercise_caps["label_smoothed_cross_entropy"]) as used:
        log_probs = F.log_softmax(logits, -1)
        (-log_probs.gather(-1, target[:, None]).mean() - log_probs.mean()).backward()
    assert used == []
    with watch(exercise_caps["softmax"]) as used:
        e = torch.exp(x - torch.logsumexp(x, -1, keepdim=True))
        (e / e.sum(-1, keepdim=True)).sum().backward()
    assert used == []
    with watch(exercise_caps["SelfAttention"]) as used:
        linear = nn.Linear(8, 8, bias=False)
        q = linear(x)
        weights = torch.softmax(torch.einsum("btd,bsd->bts", q, q) / math.sqrt(8), -1)
        (weights @ q).sum().backward()
    assert used == []
    with watch(exercise_caps["layer_norm"]) as used:
        var, mean = torch.var_mean(x, -1, unbiased=False, keepdim=True)
        ((x - mean) * torch.rsqrt(var + 1e-5)).sum().backward()
    assert used == []


def test_a_forbidden_kernel_inside_an_allowed_function_is_seen():
    with watch(EXERCISES["softmax"].forbidden) as used:
        F.gumbel_softmax(torch.randn(2, 3), tau=1.0)
    assert used == ["torch.softmax (through the operator aten._softmax)"]


def test_the_lent_components_stay_exempt():
    x = torch.randn(1, 3, 8)
    with watch(EXERCISES["EncoderLayer"].forbidden) as used:
        components.MultiHeadAttention(8, 2)(x, x, x)[0].sum().backward()
    assert used == []


# --- honest alternatives still pass ------------------------------------------------------------

HONEST = {
    "softmax": """
        import torch
        def softmax(x, dim=-1):
            return torch.exp(x - torch.logsumexp(x, dim, keepdim=True))
    """,
    "SelfAttention": """
        import math
        import torch
        class SelfAttention(SelfAttention):
            def forward(self, x, mask=None):
                q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
                scores = torch.einsum("btd,bsd->bts", q, k) / math.sqrt(q.shape[-1])
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                weights = torch.softmax(scores, dim=-1)
                return torch.einsum("bts,bsd->btd", weights, v), weights
    """,
    "label_smoothed_cross_entropy": """
        import torch.nn.functional as F
        def label_smoothed_cross_entropy(logits, target, smoothing, ignore_index=0):
            log_probs = F.log_softmax(logits, dim=-1)
            keep = target != ignore_index
            picked = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            per_token = -(1 - smoothing) * picked - smoothing * log_probs.mean(-1)
            return per_token[keep].mean()
    """,
    "layer_norm": """
        import torch
        def layer_norm(x, weight, bias, eps=1e-5):
            var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
            return (x - mean) * torch.rsqrt(var + eps) * weight + bias
    """,
    "one_hot": """
        import torch
        def one_hot(ids, vocab_size):
            return (ids[..., None] == torch.arange(vocab_size, device=ids.device)).float()
    """,
    "embedding_lookup": """
        import torch
        def embedding_lookup(ids, weight):
            return weight.index_select(0, ids.reshape(-1)).reshape(*ids.shape, weight.shape[-1])
    """,
    "patchify": """
        def patchify(images, patch_size):
            B, C, H, W = images.shape
            p = patch_size
            patches = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
            return patches.reshape(B, (H // p) * (W // p), C * p * p)
    """,
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_alternatives_pass(name):
    source = textwrap.dedent(HONEST[name]).strip() + "\n"
    after = EXERCISES[name].module
    check(name, build(name, Route("honest", source, after=after)), device="cpu")
    assert scan_forbidden(cells_with(name, Route("honest", source, after=after)), EXERCISES[name]) is None


# --- graded: the verdict the kernel hands back, and the source scan in the grader's process --------

# One class per assignment, one route per submission: routes found in the source and routes only the
# kernel's watch can see (a computed name).
GRADED = {
    "ch04_scaled_dot_product": {
        "softmax": ["private_alias", "getattr_constant", "computed_name"],
        "scaled_dot_product_attention": ["math_kernel", "computed_name"],
        "SelfAttention": ["native_multi_head"],
    },
    "ch02_embeddings": {
        "one_hot": ["imported_under_another_name"],
        "embedding_lookup": ["embedding_bag"],
        "cosine_similarity_matrix": ["embedding_loss"],
    },
}
# The reference SelfAttention calls the student's scaled_dot_product_attention: a forbidden kernel
# there is one that SelfAttention forbids too.
ALSO_ZERO = {"scaled_dot_product_attention": {"SelfAttention"}}


def with_route(nb, name: str, r: Route):
    cell = next(c for c in nb.cells if grade_id(c) == name)
    if r.after:
        nb.cells.insert(nb.cells.index(cell) + 1, nbformat.v4.new_code_cell(r.source))
    else:
        cell.source = r.source
    return nb


@pytest.fixture(scope="module")
def graded_routes(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    env = env_with_venv(AUTOGRADER_SEED="24680", AUTOGRADER_DEVICE="cpu", AUTOGRADER_CELL_TIMEOUT="60")
    submissions = {}
    for assignment, routes in GRADED.items():
        subprocess.run(
            ["nbgrader", "generate_assignment", assignment, "--force"],
            cwd=course,
            env=env,
            check=True,
            capture_output=True,
        )
        solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
        released = read_notebook(course / "exercises" / assignment / f"{assignment}.ipynb")
        names = {grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")}
        students = {"reference": None} | {f"{n}-{key}": (n, key) for n, keys in routes.items() for key in keys}
        for student, chosen in students.items():
            nb = filled_notebook(released, solutions, names)
            if chosen:
                name, key = chosen
                with_route(nb, name, next(r for r in ROUTES[name] if r.key == key))
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
        submissions[assignment] = students
    outputs = {}
    for assignment in GRADED:
        run = subprocess.run(
            [sys.executable, "-m", "autograder", "grade", assignment, "--workers", "2", "--timeout", "600"],
            cwd=course,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert "Traceback" not in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]
        outputs[assignment] = run.stdout
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for assignment, students in submissions.items():
            for student in students:
                submission = gradebook.find_submission_notebook(assignment, assignment, student)
                scores[assignment, student] = {g.name: (g.score or 0.0, g.max_score) for g in submission.grades}
    return types.SimpleNamespace(course=course, scores=scores, submissions=submissions)


def graded_outputs(course, assignment: str, student: str) -> dict[str, str]:
    nb = read_notebook(course / "autograded" / student / assignment / f"{assignment}.ipynb")
    return {
        grade_id(c): "".join(o.get("evalue", "") + o.get("text", "") for o in c.outputs)
        for c in nb.cells
        if grade_id(c) and grade_id(c).startswith("test_")
    }


GRADED_CASES = [(a, n, k) for a, routes in GRADED.items() for n, keys in routes.items() for k in keys]


@pytest.mark.grading
@pytest.mark.xdist_group("forbidden_routes_graded")
@pytest.mark.parametrize("assignment,name,key", GRADED_CASES, ids=[f"{n}-{k}" for _, n, k in GRADED_CASES])
def test_a_route_earns_nothing_when_graded(graded_routes, assignment, name, key):
    scores = graded_routes.scores[assignment, f"{name}-{key}"]
    outputs = graded_outputs(graded_routes.course, assignment, f"{name}-{key}")
    zero = {name} | ALSO_ZERO.get(name, set())
    for gid, (score, maximum) in scores.items():
        exercise = gid.removeprefix("test_").removesuffix("_hidden")
        if exercise in zero:
            assert score == 0.0, gid
            assert_forbidden_sentence(EXERCISES[exercise], outputs[gid].strip())
        else:
            assert score == maximum, f"{gid}: another exercise lost points"
    assert {f"test_{n}" for n in zero} <= set(scores)


@pytest.mark.grading
@pytest.mark.xdist_group("forbidden_routes_graded")
@pytest.mark.parametrize("assignment", sorted(GRADED))
def test_the_reference_scores_full_beside_the_routes(graded_routes, assignment):
    scores = graded_routes.scores[assignment, "reference"]
    assert all(score == maximum for score, maximum in scores.values()), scores
