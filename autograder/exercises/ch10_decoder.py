"""Chapter 10: the decoder layer and the full encoder-decoder Transformer.

The student builds on the lent ``MultiHeadAttention``, ``PositionwiseFeedForward`` and
``Encoder`` (``autograder.components``). The hidden checks also compare ``DecoderLayer`` with
PyTorch's ``nn.TransformerDecoderLayer`` given the same weights. The catalogue of wrong
versions is written on top of the reference (passed in as ``ref``).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import components
from .. import forbidden as capability
from ..calling import MODULE, Module
from ..components.transformer import sinusoidal_table
from ..cases import (also_calls, attention_state, builtin_layer_state, builtin_mask, causal, close, dropout_in_eval,
                     dropout_off_in_eval, dropped_sublayers, encoder_layer_state, ffn_state, gradients_flow, ignoring,
                     lent_component, linear_weight, matches_builtin, norm_first_ignored, norm_state, outputs_agree,
                     padding_mask, parts_problem, patched_forward, query_subtracted, raises, randn, random_mask,
                     replaced_data, shapes, with_attributes, with_forward, with_parts)
from ..spec import Case, Exercise

ASSIGNMENT = "ch10_decoder"


def decoder_layer_state(g: torch.Generator, d_model: int, d_ff: int, prefix: str = "") -> dict:
    return {**attention_state(g, d_model, f"{prefix}self_attn"), **attention_state(g, d_model, f"{prefix}cross_attn"),
            **ffn_state(g, d_model, d_ff, f"{prefix}ff"), **norm_state(g, d_model, f"{prefix}norm1"),
            **norm_state(g, d_model, f"{prefix}norm2"), **norm_state(g, d_model, f"{prefix}norm3")}


# ---------------------------------------------------------------------------------- DecoderLayer
DecoderLayer = Exercise(
    "DecoderLayer", ASSIGNMENT, call=MODULE,
    forbidden=(capability.DECODER_LAYER, capability.MULTI_HEAD_ATTENTION, capability.SCALED_DOT_PRODUCT_ATTENTION,
               components.DecoderLayer),
    why_forbidden="the point is to assemble the layer yourself from attention, the feed-forward network and Add & Norm",
    points=(2, 3), difficulty=3, minutes=30,
    task="masked self-attention, cross-attention on `memory` and the FFN, with Add & Norm in both orders; attributes `self_attn`, `cross_attn`, `ff`, `norm1`, `norm2`, `norm3`",
)


def _layer_case(g, batch, tgt_len, src_len, d_model, n_heads, d_ff, norm_first=False, activation=None,
                tgt_mask=None, memory_mask=None, note=""):
    x, memory = randn(g, batch, tgt_len, d_model), randn(g, batch, src_len, d_model)
    init = (d_model, n_heads, d_ff, 0.0, norm_first) + ((activation,) if activation else ())
    act = f", activation={activation!r}" if activation else ""
    kwargs = {key: value for key, value in (("tgt_mask", tgt_mask), ("memory_mask", memory_mask)) if value is not None}
    masks = "".join(f", {key} {tuple(value.shape)}" for key, value in kwargs.items()) or ", no masks"
    label = (f"DecoderLayer(d_model={d_model}, n_heads={n_heads}, d_ff={d_ff}, norm_first={norm_first}{act}) on "
             f"{shapes(x=x, memory=memory)}{masks}{note}")
    return Case(label, (x, memory), kwargs, init=init, state=decoder_layer_state(g, d_model, d_ff))


@DecoderLayer.cases
def _(g, hidden):
    if not hidden:
        return [
            _layer_case(g, 2, 4, 6, 8, 2, 16, tgt_mask=causal(4), memory_mask=padding_mask([6, 3], 6),
                        note=" (causal target, padded source)"),
            _layer_case(g, 1, 3, 5, 8, 2, 16, norm_first=True, tgt_mask=causal(3), note=" (causal target)"),
            _layer_case(g, 2, 2, 3, 6, 3, 12, activation="gelu"),
        ]
    both = causal(6) & padding_mask([6, 4, 5], 6)
    return [
        _layer_case(g, 3, 6, 7, 16, 4, 32, tgt_mask=both, memory_mask=padding_mask([7, 2, 5], 7),
                    note=" (causal and padded target, padded source)"),
        _layer_case(g, 3, 6, 4, 16, 4, 32, norm_first=True, tgt_mask=both, memory_mask=padding_mask([4, 4, 1], 4),
                    note=" (causal and padded target, padded source)"),
        _layer_case(g, 2, 1, 5, 8, 2, 16, tgt_mask=causal(1), note=" (target length 1)"),
        _layer_case(g, 2, 4, 1, 8, 2, 16, norm_first=True, tgt_mask=causal(4), note=" (source length 1)"),
        _layer_case(g, 2, 5, 3, 12, 3, 24, activation="gelu", tgt_mask=random_mask(g, 2, 3, 5, 5),
                    memory_mask=random_mask(g, 2, 3, 5, 3), note=" (masks per head)"),
    ]


@DecoderLayer.prop("self_attn, cross_attn, ff and norm1..norm3 are the parts the contract names")
def _(g):
    expected = {"self_attn": "MultiHeadAttention", "cross_attn": "MultiHeadAttention", "ff": "PositionwiseFeedForward",
                "norm1": "LayerNorm", "norm2": "LayerNorm", "norm3": "LayerNorm"}

    return [Case("DecoderLayer(d_model=8, n_heads=2, d_ff=16)", init=(8, 2, 16), inspect=True)], \
        lambda results, dtype: parts_problem(results[0].structure, "DecoderLayer(8, 2, 16)", expected)


@DecoderLayer.prop("equals nn.TransformerDecoderLayer(batch_first=True) given the same weights, in both norm orders, "
                   "with a causal target mask and a source padding mask")
def _(g):
    tgt_mask, memory_mask = causal(4), padding_mask([5, 2], 5)
    cases = [_layer_case(g, 2, 4, 5, 8, 2, 16, norm_first=norm_first, tgt_mask=tgt_mask, memory_mask=memory_mask)
             for norm_first in (False, True)]

    def builtin_output(case):
        builtin = nn.TransformerDecoderLayer(8, 2, 16, 0.0, batch_first=True, norm_first=case.init[4]).double()
        builtin.load_state_dict(builtin_layer_state(case.state, "", {"self_attn": "self_attn",
                                                                    "cross_attn": "multihead_attn"}))
        x, memory = (arg.double() for arg in case.args)
        return builtin(x, memory, tgt_mask=~tgt_mask, memory_mask=builtin_mask(memory_mask, 2, 2, 4, 5))
    return matches_builtin(cases, builtin_output, "With norm_first={case.init[4]}, a causal target mask and a source "
                           "padding mask, your DecoderLayer differs from nn.TransformerDecoderLayer(batch_first=True) "
                           "given the same weights (largest difference {error:.3g}).")


@DecoderLayer.prop("causality: with a causal target mask, changing later target positions leaves earlier outputs unchanged")
def _(g):
    case = _layer_case(g, 2, 5, 4, 8, 2, 16, tgt_mask=causal(5))
    changed_x = case.args[0].clone()
    changed_x[:, 3:] = randn(g, 2, 2, 8)
    changed = Case(case.label + ", positions 3 and 4 of x changed", (changed_x, case.args[1]), case.kwargs,
                   init=case.init, state=case.state)
    return outputs_agree([case, changed], "Changing the target at positions 3 and 4 changed the outputs at positions 0 "
                         "to 2: the decoder can see the future. Pass tgt_mask to the (masked) self-attention.",
                         lambda out: out[:, :3])


@DecoderLayer.prop("padding invariance: appending padded source positions leaves the output unchanged")
def _(g):
    case = _layer_case(g, 2, 3, 4, 8, 2, 16, tgt_mask=causal(3))
    x, memory = case.args
    padded_memory = torch.cat([memory, randn(g, 2, 2, 8, scale=3)], dim=1)
    padded = Case(f"{case.label.split(' on ')[0]} on {shapes(x=x, memory=padded_memory)}: the same 4 source positions "
                  "followed by 2 padding positions and their memory_mask", (x, padded_memory),
                  {"tgt_mask": causal(3), "memory_mask": padding_mask([4, 4], 6)}, init=case.init, state=case.state)
    return outputs_agree([case, padded], "Appending 2 padded source positions (masked out by memory_mask) changed the "
                         "output. Pass memory_mask to the cross-attention.")


@DecoderLayer.prop("dropout: off in eval mode; with dropout=1.0 in training mode each sublayer's output is dropped")
def _(g):
    eval_cases, eval_judge = dropout_off_in_eval(_layer_case(g, 2, 3, 4, 8, 2, 16, tgt_mask=causal(3)), 3, "DecoderLayer")
    dropped, dropped_judge = dropped_sublayers([_layer_case(g, 2, 3, 4, 8, 2, 16), _layer_case(g, 2, 3, 4, 8, 2, 16, True)],
                                               3, ("norm1", "norm2", "norm3"), "DecoderLayer")

    def judge(results, dtype):
        return eval_judge(results[:2], dtype) or dropped_judge(results[2:], dtype)
    return eval_cases + dropped, judge


DecoderLayer.prop("gradients reach x, memory and every part of the layer",
                  lambda g: gradients_flow(_layer_case(g, 2, 3, 4, 8, 2, 16, tgt_mask=causal(3)),
                                           {"args.0": "x", "args.1": "memory",
                                            "params.self_attn.q_proj.weight": "self_attn",
                                            "params.cross_attn.k_proj.weight": "cross_attn", "params.ff.linear1.weight": "ff",
                                            "params.norm3.weight": "norm3"}))


def _patched_parts(ref, make: dict):
    """A wrong DecoderLayer: the reference, with the forward of some of its parts replaced (``cases.with_parts``)."""
    return with_parts(ref.DecoderLayer, make)


@DecoderLayer.mistake("the cross-attention takes its keys and values from x, the decoder's own tokens, instead of "
                      "from `memory`, the encoder's output.")
def cross_attends_to_itself(ref):
    return _patched_parts(ref, {"cross_attn": lambda original, call: lambda q, k, v, mask=None: original(q, q, q)})


@DecoderLayer.mistake("`tgt_mask` is ignored: without it every target position sees the future (masked "
                      "self-attention is what makes the decoder causal).")
def ignores_tgt_mask(ref):
    return ignoring(ref.DecoderLayer, "tgt_mask")


@DecoderLayer.mistake("`memory_mask` is ignored: pass it to the cross-attention, so that no target position "
                      "attends to source padding.")
def ignores_memory_mask(ref):
    return ignoring(ref.DecoderLayer, "memory_mask")


@DecoderLayer.mistake("the residual around the cross-attention is missing: add its input back, h + CrossAttn(h, memory).")
def no_cross_residual(ref):
    return _patched_parts(ref, {"cross_attn": lambda original, call: query_subtracted(original)})


@DecoderLayer.mistake("the cross-attention comes before the masked self-attention. The order is: masked "
                      "self-attention, then cross-attention, then the feed-forward network.")
def cross_attention_first(ref):
    def as_cross(original, call):
        cross = call["originals"]["cross_attn"]
        return lambda q, k, v, mask=None: cross(q, call["memory"], call["memory"], call["memory_mask"])

    def as_self(original, call):
        own = call["originals"]["self_attn"]
        return lambda q, k, v, mask=None: own(q, q, q, call["tgt_mask"])
    return _patched_parts(ref, {"self_attn": as_cross, "cross_attn": as_self})


norm_first_ignored(DecoderLayer)


@DecoderLayer.mistake("norm2 and norm3 are swapped: norm1 goes with the self-attention, norm2 with the "
                      "cross-attention, norm3 with the feed-forward network.")
def norms_swapped(ref):
    return with_attributes(ref.DecoderLayer, lambda self: {"norm2": self.norm3, "norm3": self.norm2})


dropout_in_eval(DecoderLayer)


@DecoderLayer.mistake("uses nn.TransformerDecoderLayer", expect="uses torch.nn.TransformerDecoderLayer")
def builtin(ref):
    return also_calls(ref.DecoderLayer, lambda self, x, *args, **kwargs: nn.TransformerDecoderLayer(
        x.shape[-1], 1, 4, batch_first=True))


lent_component(DecoderLayer, components.DecoderLayer, "decoder layer")


# ----------------------------------------------------------------------------------- Transformer
def _calls(model: nn.Module) -> nn.Module:
    """A case can call ``forward``, ``encode`` or ``decode``: its last keyword ``method`` says which."""
    _exact_positions(model)
    return _Calls(model)


def _exact_positions(model: nn.Module) -> None:
    """Replace a stored sinusoid table by its exact float64 values, when it is one.

    A table built in float32 (PyTorch's default) and later cast to float64 differs from one built
    in float64 by up to about 1e-5 (at large positions): both are right, but float64's tolerance would count the difference.
    A table that is not the sinusoid table (a mistake) is left as it is.
    """
    with torch.no_grad():
        for buffer in model.buffers():
            if buffer.dim() < 2 or not buffer.is_floating_point() or buffer.shape[-1] % 2:
                continue
            table = sinusoidal_table(buffer.shape[-2], buffer.shape[-1])
            if buffer.numel() == table.numel() and torch.allclose(buffer.detach().cpu().double().reshape(table.shape),
                                                                  table, atol=1e-4):
                buffer.copy_(table.reshape(buffer.shape))


class _Calls(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src, tgt=None, memory=None, method="forward"):
        if method == "encode":
            return self.model.encode(src)
        if method == "decode":
            return self.model.decode(tgt, memory, src)
        return self.model(src, tgt)


Transformer = Exercise(
    "Transformer", ASSIGNMENT, call=Module(wrap=_calls),
    forbidden=(capability.TRANSFORMER, components.Transformer),
    why_forbidden="the point is to assemble the model yourself from its parts",
    points=(2, 4), difficulty=4, minutes=40,
    task=r"embeddings scaled by $\sqrt{d_\text{model}}$ plus sinusoidal positions, the masks from `pad_id`, the encoder, the decoder layers, the output projection; methods `encode`, `decode`, `forward`",
)

SRC_VOCAB, TGT_VOCAB = 11, 13


def _model_state(g, d_model, n_layers, d_ff, src_vocab=SRC_VOCAB, tgt_vocab=TGT_VOCAB) -> dict:
    state = {"src_embed.weight": randn(g, src_vocab, d_model), "tgt_embed.weight": randn(g, tgt_vocab, d_model)}
    for i in range(n_layers):
        state.update(encoder_layer_state(g, d_model, d_ff, f"encoder.layers.{i}."))
        state.update(decoder_layer_state(g, d_model, d_ff, f"decoder_layers.{i}."))
    state["out_proj.weight"] = linear_weight(g, tgt_vocab, d_model)
    state["out_proj.bias"] = 0.1 * randn(g, tgt_vocab)
    return state


def _tokens(g, lengths: list[int], length: int, vocab: int, pad_id: int = 0) -> torch.Tensor:
    """(B, length) token ids; sequence b has lengths[b] real tokens (never pad_id), then pad_id."""
    ids = torch.randint(0, vocab - 1, (len(lengths), length), generator=g)
    ids = ids + (ids >= pad_id).long()  # skip pad_id
    real = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return torch.where(real, ids, torch.full_like(ids, pad_id))


def _model_case(g, src, tgt=None, memory=None, method="forward", d_model=16, n_heads=2, n_layers=2, d_ff=32,
                max_len=20, pad_id=0, note=""):
    init = (SRC_VOCAB, TGT_VOCAB, d_model, n_heads, n_layers, d_ff, max_len, 0.0, pad_id)
    model = (f"Transformer(src_vocab={SRC_VOCAB}, tgt_vocab={TGT_VOCAB}, d_model={d_model}, n_heads={n_heads}, "
             f"n_layers={n_layers}, d_ff={d_ff}, max_len={max_len}, pad_id={pad_id})")
    call = {"forward": f"(src, tgt) with {shapes(src=src, tgt=tgt)}",
            "encode": f".encode(src) with {shapes(src=src)}",
            "decode": f".decode(tgt, memory, src) with {shapes(tgt=tgt, memory=memory, src=src)}"}[method]
    kwargs = {"tgt": tgt, "memory": memory, "method": method}
    return Case(model + call + note, (src,), {k: v for k, v in kwargs.items() if v is not None}, init=init,
                state=_model_state(g, d_model, n_layers, d_ff))


@Transformer.cases
def _(g, hidden):
    if not hidden:
        return [
            _model_case(g, _tokens(g, [6, 4], 6, SRC_VOCAB), _tokens(g, [5, 3], 5, TGT_VOCAB),
                        note=" (padded source and target)"),
            _model_case(g, _tokens(g, [7, 5], 7, SRC_VOCAB), method="encode", n_layers=1, note=" (padded source)"),
            _model_case(g, _tokens(g, [4], 4, SRC_VOCAB), _tokens(g, [3], 3, TGT_VOCAB),
                        memory=randn(g, 1, 4, 16), method="decode", n_layers=1, note=" (a memory of your choice)"),
            _model_case(g, _tokens(g, [5, 2], 5, SRC_VOCAB, 1), _tokens(g, [4, 4], 4, TGT_VOCAB, 1), pad_id=1,
                        n_layers=1, note=" (pad_id=1)"),
        ]
    return [
        _model_case(g, _tokens(g, [9, 3, 6], 9, SRC_VOCAB), _tokens(g, [7, 7, 2], 7, TGT_VOCAB), d_model=24,
                    n_heads=3, d_ff=48, note=" (padded source and target)"),
        _model_case(g, _tokens(g, [5, 5], 5, SRC_VOCAB, 2), _tokens(g, [1, 1], 1, TGT_VOCAB, 2), pad_id=2,
                    n_layers=3, note=" (target length 1, pad_id=2)"),
        _model_case(g, _tokens(g, [8, 1], 8, SRC_VOCAB), method="encode", n_layers=1),
        _model_case(g, _tokens(g, [3, 6], 6, SRC_VOCAB), _tokens(g, [5, 2], 5, TGT_VOCAB), memory=randn(g, 2, 6, 16),
                    method="decode"),
        Case("Transformer(src_vocab=11, tgt_vocab=13) (the default sizes)(src, tgt) with src (2, 12), tgt (2, 10)",
             (_tokens(g, [12, 8], 12, SRC_VOCAB),), {"tgt": _tokens(g, [10, 6], 10, TGT_VOCAB), "method": "forward"},
             init=(SRC_VOCAB, TGT_VOCAB), state=_model_state(g, 64, 2, 128)),
    ]


@Transformer.prop("src_embed, tgt_embed, encoder, decoder_layers and out_proj are the parts the contract names")
def _(g):
    expected = {"src_embed": ("Embedding", "11, 16"), "tgt_embed": ("Embedding", "13, 16"), "encoder": ("Encoder", None),
                "decoder_layers": ("ModuleList", None), "out_proj": ("Linear", "in_features=16, out_features=13, bias=True")}

    def judge(results, dtype):
        modules = results[0].structure.get("modules", {})
        for name, (kind, shape) in expected.items():
            found = modules.get(name)
            if found is None or found["type"] != kind:
                return (f"Transformer(11, 13, d_model=16, n_heads=2, n_layers=3, d_ff=32).{name} should be a {kind}, "
                        f"but it is {found['type'] if found else 'missing'}.")
            if shape and not found["repr"].startswith(shape):
                return (f"Transformer(11, 13, d_model=16, ...).{name} should be {kind}({shape}), but it is "
                        f"{kind}({found['repr']}).")
        layers = [name for name in modules if name.count(".") == 1 and name.startswith("decoder_layers.")]
        if len(layers) != 3:
            return f"With n_layers=3, decoder_layers should hold 3 decoder layers, but it holds {len(layers)}."
        return None
    return [Case("Transformer(11, 13, d_model=16, n_heads=2, n_layers=3, d_ff=32)", init=(11, 13, 16, 2, 3, 32),
                 inspect=True)], judge


@Transformer.prop("causality: changing a later target token leaves the earlier logits unchanged")
def _(g):
    src, tgt = _tokens(g, [6, 6], 6, SRC_VOCAB), _tokens(g, [5, 5], 5, TGT_VOCAB)
    case = _model_case(g, src, tgt, n_layers=1)
    changed_tgt = tgt.clone()
    changed_tgt[:, 3:] = changed_tgt[:, 3:] % (TGT_VOCAB - 1) + 1  # other real tokens
    changed = Case(case.label + ", target tokens 3 and 4 changed", (src,), {**case.kwargs, "tgt": changed_tgt},
                   init=case.init, state=case.state)
    return outputs_agree([case, changed], "Changing target tokens 3 and 4 changed the logits at positions 0 to 2: the "
                         "decoder sees the future. Give the decoder's self-attention a causal mask (True on and below "
                         "the diagonal).", lambda out: out[:, :3])


@Transformer.prop("padding invariance: appending padding to the source or the target leaves the real logits unchanged")
def _(g):
    src, tgt = _tokens(g, [5, 5], 5, SRC_VOCAB), _tokens(g, [4, 4], 4, TGT_VOCAB)
    case = _model_case(g, src, tgt, n_layers=1)

    def pad(ids, n):
        return torch.cat([ids, torch.zeros(ids.shape[0], n, dtype=torch.long)], dim=1)

    padded_src = Case(case.label + ", the source followed by 3 padding tokens", (pad(src, 3),), case.kwargs,
                      init=case.init, state=case.state)
    padded_tgt = Case(case.label + ", the target followed by 2 padding tokens", (src,), {**case.kwargs, "tgt": pad(tgt, 2)},
                      init=case.init, state=case.state)

    def judge(results, dtype):
        plain, with_src_padding, with_tgt_padding = (r.output for r in results)
        if not close(with_src_padding, plain, dtype):
            return ("Appending 3 padding tokens (pad_id) to the source changed the logits. Mask source padding, "
                    "(src != pad_id), in the encoder's self-attention and in the decoder's cross-attention.")
        if not close(with_tgt_padding[:, :4], plain, dtype):
            return "Appending 2 padding tokens to the target changed the logits of the real target positions."
        return None
    return [case, padded_src, padded_tgt], judge


@Transformer.prop("dropout is off in eval mode: with dropout=0.5 the logits equal those without dropout")
def _(g):
    case = _model_case(g, _tokens(g, [5, 3], 5, SRC_VOCAB), _tokens(g, [4, 4], 4, TGT_VOCAB), n_layers=1)
    return dropout_off_in_eval(case, 7, "Transformer")


@Transformer.prop("a sequence longer than max_len raises ValueError")
def _(g):
    src = _tokens(g, [7], 7, SRC_VOCAB)
    case = Case(f"Transformer(src_vocab={SRC_VOCAB}, tgt_vocab={TGT_VOCAB}, d_model=16, n_heads=2, n_layers=1, d_ff=32, "
                f"max_len=6).encode(src) with src (1, 7) (longer than max_len)", (src,), {"method": "encode"},
                init=(SRC_VOCAB, TGT_VOCAB, 16, 2, 1, 32, 6, 0.0, 0), state=_model_state(g, 16, 1, 32))
    return raises(case, "ValueError", "Transformer(..., max_len=6).encode(src) should raise ValueError for a source of 7 "
                  "tokens (longer than max_len), but it returned a result.",
                  "For a sequence longer than max_len, Transformer")


Transformer.prop("gradients reach the embeddings, the encoder, the decoder and the output projection",
                 lambda g: gradients_flow(_model_case(g, _tokens(g, [4, 3], 4, SRC_VOCAB), _tokens(g, [3, 3], 3, TGT_VOCAB),
                                                      n_layers=1),
                                          {"params.model.src_embed.weight": "src_embed",
                                           "params.model.tgt_embed.weight": "tgt_embed",
                                           "params.model.encoder.layers.0.self_attn.q_proj.weight": "the encoder",
                                           "params.model.decoder_layers.0.cross_attn.k_proj.weight": "the decoder's cross-attention",
                                           "params.model.out_proj.weight": "out_proj"}))


def _positions(model: nn.Module) -> torch.Tensor:
    return model.pe


def _with_values(ref, change):
    """A wrong Transformer: the reference with some tensors replaced by ``change(model) -> {tensor: value}``."""
    class Wrong(ref.Transformer):
        def encode(self, src):
            with replaced_data(change(self)):
                return super().encode(src)

        def decode(self, tgt, memory, src):
            with replaced_data(change(self)):
                return super().decode(tgt, memory, src)
    return Wrong


@Transformer.mistake("the embeddings are not multiplied by sqrt(d_model) before the positions are added.")
def no_embedding_scale(ref):
    return _with_values(ref, lambda m: {e.weight: e.weight.data / math.sqrt(m.d_model) for e in (m.src_embed, m.tgt_embed)})


@Transformer.mistake("the positional encodings are missing: add the sinusoid table's first T rows to the scaled embeddings.")
def no_positions(ref):
    return _with_values(ref, lambda m: {_positions(m): torch.zeros_like(_positions(m))})


@Transformer.mistake("the positions are scaled by sqrt(d_model) too: scale the embeddings only, then add the positions.")
def positions_scaled(ref):
    return _with_values(ref, lambda m: {_positions(m): _positions(m) * math.sqrt(m.d_model)})


def _with_decoder_masks(ref, change):
    """A wrong Transformer whose decoder layers get other masks: ``change(tgt_mask, memory_mask)``."""
    class Wrong(ref.Transformer):
        def decode(self, tgt, memory, src):
            with contextlib.ExitStack() as stack:
                for layer in self.decoder_layers:
                    stack.enter_context(patched_forward(layer, lambda original: lambda x, mem, t=None, m=None: original(
                        x, mem, *change(t, m))))
                return super().decode(tgt, memory, src)
    return Wrong


@Transformer.mistake("the decoder has no causal mask: each target position sees the tokens after it.")
def no_causal_mask(ref):
    return _with_decoder_masks(ref, lambda t, m: (t[..., -1:, :], m))  # the last row keeps only the padding


@Transformer.mistake("the target's padding is not masked: the decoder's self-attention mask should be causal AND "
                     "(tgt != pad_id) for the keys.")
def no_target_padding(ref):
    return _with_decoder_masks(ref, lambda t, m: (torch.ones(t.shape[-1], t.shape[-1], dtype=torch.bool,
                                                             device=t.device).tril(), m))


@Transformer.mistake("the cross-attention ignores the source padding: pass the mask (src != pad_id) as memory_mask.")
def no_memory_mask(ref):
    return _with_decoder_masks(ref, lambda t, m: (t, None))


@Transformer.mistake("the encoder ignores the source padding: pass the mask (src != pad_id) to the encoder.")
def unmasked_encoder(ref):
    class Wrong(ref.Transformer):
        def encode(self, src):
            with patched_forward(self.encoder, lambda original: lambda x, mask=None: original(x)):
                return super().encode(src)
    return Wrong


@Transformer.mistake("`decode` ignores the memory it is given and encodes src again. It must use `memory`: "
                     "generation encodes once and decodes many times.")
def decode_reencodes(ref):
    return with_forward(ref.Transformer,
                        lambda self, right, tgt, memory, src: right(tgt, self.encode(src), src), method="decode")


@Transformer.mistake("an activation (ReLU) is applied to the logits. The output projection gives the logits "
                     "directly; a softmax, if needed, comes later.")
def relu_on_logits(ref):
    return with_forward(ref.Transformer,
                        lambda self, right, tgt, memory, src: F.relu(right(tgt, memory, src)), method="decode")


@Transformer.mistake("the model returns probabilities (a softmax over the vocabulary) instead of logits.")
def returns_probabilities(ref):
    return with_forward(ref.Transformer,
                        lambda self, right, tgt, memory, src: right(tgt, memory, src).softmax(-1), method="decode")


dropout_in_eval(Transformer)


@Transformer.mistake("a sequence longer than max_len does not raise ValueError", expect="should raise ValueError. Instead")
def no_length_check(ref):
    class Wrong(ref.Transformer):
        def embed(self, table, ids):
            saved, self.max_len = self.max_len, max(self.max_len, ids.shape[1])
            try:
                return super().embed(table, ids)
            finally:
                self.max_len = saved
    return Wrong


@Transformer.mistake("uses nn.Transformer", expect="uses torch.nn.Transformer")
def builtin(ref):
    class Wrong(ref.Transformer):
        def encode(self, src):
            nn.Transformer(8, 2, 1, 1, 16, batch_first=True)
            return super().encode(src)
    return Wrong


lent_component(Transformer, components.Transformer, "Transformer")
