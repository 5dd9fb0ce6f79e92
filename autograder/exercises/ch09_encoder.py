"""Chapter 9: the encoder layer and the encoder stack.

The student builds on the lent ``MultiHeadAttention`` and ``PositionwiseFeedForward``
(``autograder.components``). The hidden checks also compare with PyTorch's
``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` given the same weights. The
catalogue of wrong versions is written on top of the reference (passed in as ``ref``).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import components
from .. import forbidden as capability
from ..calling import MODULE
from ..cases import (also_calls, builtin_layer_state, builtin_mask, causal, dropout_in_eval, dropout_off_in_eval,
                     dropped_sublayers, encoder_layer_state, gradients_flow, ignoring, lent_component,
                     mask_description, matches_builtin, norm_first_ignored, norm_state, outputs_agree, padding_mask,
                     parts_problem, patched_forward, query_subtracted, randn, random_mask, shapes, with_attributes,
                     with_parts)
from ..spec import Case, Exercise

ASSIGNMENT = "ch09_encoder"
BUILTINS_WHY = "the point is to assemble the layer yourself from attention, the feed-forward network and Add & Norm"


# ---------------------------------------------------------------------------------- EncoderLayer
EncoderLayer = Exercise(
    "EncoderLayer", ASSIGNMENT, call=MODULE,
    forbidden=(capability.ENCODER_LAYER, capability.MULTI_HEAD_ATTENTION, capability.SCALED_DOT_PRODUCT_ATTENTION,
               components.EncoderLayer),
    why_forbidden=BUILTINS_WHY,
    points=(2, 4), difficulty=3, minutes=30,
    task="self-attention and the FFN with Add & Norm in both orders; attributes `self_attn`, `ff`, `norm1`, `norm2`",
)


def _layer_case(g, batch, length, d_model, n_heads, d_ff, norm_first=False, activation=None, mask=None, note=""):
    x = randn(g, batch, length, d_model)
    init = (d_model, n_heads, d_ff, 0.0, norm_first) + ((activation,) if activation else ())
    act = f", activation={activation!r}" if activation else ""
    label = (f"EncoderLayer(d_model={d_model}, n_heads={n_heads}, d_ff={d_ff}, norm_first={norm_first}{act}) on "
             f"{shapes(x=x)}{mask_description(mask)}{note}")
    return Case(label, (x,), {} if mask is None else {"mask": mask}, init=init,
                state=encoder_layer_state(g, d_model, d_ff))


@EncoderLayer.cases
def _(g, hidden):
    if not hidden:
        return [
            _layer_case(g, 2, 5, 8, 2, 16, mask=padding_mask([5, 3], 5), note=" (padding: lengths 5 and 3)"),
            _layer_case(g, 2, 4, 8, 2, 16, norm_first=True),
            _layer_case(g, 1, 4, 6, 3, 12, norm_first=True, activation="gelu", mask=causal(4), note=" (causal)"),
        ]
    return [
        _layer_case(g, 3, 7, 16, 4, 32, mask=padding_mask([7, 4, 1], 7), note=" (padding)"),
        _layer_case(g, 3, 7, 16, 4, 32, norm_first=True, mask=padding_mask([2, 7, 5], 7), note=" (padding)"),
        _layer_case(g, 2, 1, 8, 2, 16, note=" (length 1)"),
        _layer_case(g, 2, 6, 12, 3, 24, activation="gelu", mask=random_mask(g, 2, 3, 6, 6), note=" (a mask per head)"),
        _layer_case(g, 4, 5, 8, 4, 8, norm_first=True, mask=causal(5), note=" (causal)"),
    ]


@EncoderLayer.prop("self_attn, ff, norm1 and norm2 are the parts the contract names")
def _(g):
    expected = {"self_attn": "MultiHeadAttention", "ff": "PositionwiseFeedForward", "norm1": "LayerNorm", "norm2": "LayerNorm"}

    def judge(results, dtype):
        modules = results[0].structure.get("modules", {})
        if problem := parts_problem(results[0].structure, "EncoderLayer(8, 2, 16)", expected):
            return problem
        for name in ("norm1", "norm2"):
            if not modules[name]["repr"].startswith("(8,)"):
                return f"EncoderLayer(8, 2, 16).{name} should be nn.LayerNorm(8), but it is LayerNorm({modules[name]['repr']})."
        return None
    return [Case("EncoderLayer(d_model=8, n_heads=2, d_ff=16)", init=(8, 2, 16), inspect=True)], judge


@EncoderLayer.prop("equals nn.TransformerEncoderLayer(batch_first=True) given the same weights, in both norm orders, with a padding mask")
def _(g):
    mask = padding_mask([6, 2, 4], 6)
    cases = [_layer_case(g, 3, 6, 8, 2, 16, norm_first=norm_first, mask=mask) for norm_first in (False, True)]

    def builtin_output(case):
        builtin = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True, norm_first=case.init[4]).double()
        builtin.load_state_dict(builtin_layer_state(case.state, "", {"self_attn": "self_attn"}))
        return builtin(case.args[0].double(), src_mask=builtin_mask(mask, 3, 2, 6, 6))
    return matches_builtin(cases, builtin_output, "With norm_first={case.init[4]} and a padding mask, your EncoderLayer "
                           "differs from nn.TransformerEncoderLayer(batch_first=True) given the same weights (largest "
                           "difference {error:.3g}).")


@EncoderLayer.prop("padding invariance: appending padding tokens leaves the real positions' outputs unchanged")
def _(g):
    real = _layer_case(g, 2, 4, 8, 2, 16)
    x = real.args[0]
    padded_x = torch.cat([x, randn(g, 2, 3, 8, scale=3)], dim=1)
    padded = Case(real.label.replace(shapes(x=x), shapes(x=padded_x)).replace(", no mask", "") +
                  ", the same 4 tokens followed by 3 padding tokens and their padding mask",
                  (padded_x,), {"mask": padding_mask([4, 4], 7)}, init=real.init, state=real.state)
    return outputs_agree([real, padded], "Appending 3 padding tokens (masked out by the padding mask) changed the outputs "
                         "at the 4 real positions. Pass the mask to the self-attention, so that no real token attends "
                         "to padding.", lambda out: out[:, :4], lambda out: out)


@EncoderLayer.prop("dropout: off in eval mode; with dropout=1.0 in training mode each sublayer's output is dropped")
def _(g):
    eval_cases, eval_judge = dropout_off_in_eval(_layer_case(g, 2, 4, 8, 2, 16), 3, "EncoderLayer")
    dropped, dropped_judge = dropped_sublayers([_layer_case(g, 2, 3, 8, 2, 16), _layer_case(g, 2, 3, 8, 2, 16, True)],
                                               3, ("norm1", "norm2"), "EncoderLayer")

    def judge(results, dtype):
        return eval_judge(results[:2], dtype) or dropped_judge(results[2:], dtype)
    return eval_cases + dropped, judge


EncoderLayer.prop("gradients reach x and every part of the layer",
                  lambda g: gradients_flow(_layer_case(g, 2, 3, 8, 2, 16, mask=padding_mask([3, 2], 3)),
                                           {"args.0": "x", "params.self_attn.q_proj.weight": "self_attn.q_proj.weight",
                                            "params.ff.linear1.weight": "ff.linear1.weight",
                                            "params.norm1.weight": "norm1.weight", "params.norm2.bias": "norm2.bias"}))


def _patched_layer(ref, part: str, make):
    """A wrong EncoderLayer: the reference, with the forward of one of its parts replaced by ``make(original, x)``."""
    return with_parts(ref.EncoderLayer, {part: lambda original, call: make(original, call["x"])})


@EncoderLayer.mistake("the residual around self-attention is missing: the Add is x + attention(x), not attention(x) alone.")
def no_attention_residual(ref):
    return _patched_layer(ref, "self_attn", lambda original, x: query_subtracted(original))


@EncoderLayer.mistake("the residual around the feed-forward network is missing: add its input back, h + ff(h).")
def no_ffn_residual(ref):
    return _patched_layer(ref, "ff", lambda original, x: lambda h: original(h) - h)


@EncoderLayer.mistake("the feed-forward network reads the layer's input x instead of the output of the attention "
                      "sublayer: the two sublayers run one after the other.")
def ffn_reads_layer_input(ref):
    return _patched_layer(ref, "ff", lambda original, x: lambda h: original(x))


norm_first_ignored(EncoderLayer)


@EncoderLayer.mistake("norm1 and norm2 are swapped: norm1 belongs to the attention sublayer, norm2 to the "
                      "feed-forward sublayer.")
def norms_swapped(ref):
    return with_attributes(ref.EncoderLayer, lambda self: {"norm1": self.norm2, "norm2": self.norm1})


@EncoderLayer.mistake("the mask is ignored: pass it to the self-attention, so that tokens do not attend to padding.")
def ignores_mask(ref):
    return ignoring(ref.EncoderLayer, "mask")


dropout_in_eval(EncoderLayer)


@EncoderLayer.mistake("uses nn.TransformerEncoderLayer", expect="uses torch.nn.TransformerEncoderLayer")
def builtin(ref):
    return also_calls(ref.EncoderLayer, lambda self, x, mask=None: nn.TransformerEncoderLayer(x.shape[-1], 1, 4,
                                                                                               batch_first=True))


lent_component(EncoderLayer, components.EncoderLayer, "encoder layer")


# ---------------------------------------------------------------------------------------- Encoder
Encoder = Exercise(
    "Encoder", ASSIGNMENT, call=MODULE,
    forbidden=(capability.ENCODER, components.Encoder),
    why_forbidden="the point is to stack your encoder layers yourself",
    points=(2, 2), difficulty=2, minutes=20,
    task="`n_layers` layers in an `nn.ModuleList` named `layers`; a final LayerNorm `norm` in pre-norm, else `None`",
)


def _encoder_case(g, n_layers, batch, length, d_model, n_heads, d_ff, norm_first=False, mask=None, note=""):
    x = randn(g, batch, length, d_model)
    state = {}
    for i in range(n_layers):
        state.update(encoder_layer_state(g, d_model, d_ff, f"layers.{i}."))
    if norm_first:
        state.update(norm_state(g, d_model, "norm"))
    label = (f"Encoder(n_layers={n_layers}, d_model={d_model}, n_heads={n_heads}, d_ff={d_ff}, norm_first={norm_first}) "
             f"on {shapes(x=x)}{mask_description(mask)}{note}")
    return Case(label, (x,), {} if mask is None else {"mask": mask},
                init=(n_layers, d_model, n_heads, d_ff, 0.0, norm_first), state=state)


@Encoder.cases
def _(g, hidden):
    if not hidden:
        return [
            _encoder_case(g, 2, 2, 5, 8, 2, 16, norm_first=True, mask=padding_mask([5, 3], 5), note=" (padding)"),
            _encoder_case(g, 2, 2, 4, 8, 2, 16),
            _encoder_case(g, 3, 1, 4, 6, 3, 12, mask=causal(4), note=" (causal)"),
        ]
    return [
        _encoder_case(g, 3, 3, 6, 16, 4, 32, norm_first=True, mask=padding_mask([6, 1, 4], 6), note=" (padding)"),
        _encoder_case(g, 2, 3, 6, 16, 4, 32, mask=padding_mask([3, 6, 5], 6), note=" (padding)"),
        _encoder_case(g, 1, 2, 5, 8, 2, 16, norm_first=True, note=" (one layer)"),
        _encoder_case(g, 2, 2, 1, 8, 4, 8, note=" (length 1)"),
    ]


@Encoder.prop("`layers` holds n_layers encoder layers; `norm` is a LayerNorm when norm_first, else None")
def _(g):
    def judge(results, dtype):
        for result, norm_first in zip(results, (False, True)):
            modules = result.structure.get("modules", {})
            layers = modules.get("layers")
            if layers is None or layers["type"] != "ModuleList":
                return f"Encoder(3, 8, 2, 16).layers should be an nn.ModuleList, but it is {layers['type'] if layers else 'missing'}."
            count = len([name for name in modules if name.count(".") == 1 and name.startswith("layers.")])
            if count != 3:
                return f"Encoder(3, 8, 2, 16).layers should hold 3 layers, but it holds {count}."
            norm = modules.get("norm")
            if norm_first and (norm is None or norm["type"] != "LayerNorm"):
                return ("With norm_first=True, Encoder.norm should be the final nn.LayerNorm(d_model), but it is "
                        f"{norm['type'] if norm else 'missing'}.")
            if not norm_first and norm is not None:
                return ("With norm_first=False (post-norm), Encoder.norm should be None: every layer already ends "
                        f"with a LayerNorm. Yours is a {norm['type']}.")
        return None
    return [Case("Encoder(n_layers=3, d_model=8, n_heads=2, d_ff=16, norm_first=False)", init=(3, 8, 2, 16), inspect=True),
            Case("Encoder(n_layers=3, d_model=8, n_heads=2, d_ff=16, norm_first=True)", init=(3, 8, 2, 16, 0.0, True),
                 inspect=True)], judge


@Encoder.prop("equals nn.TransformerEncoder given the same weights, in both norm orders, with a padding mask")
def _(g):
    mask = padding_mask([5, 2], 5)
    cases = [_encoder_case(g, 2, 2, 5, 8, 2, 16, norm_first=norm_first, mask=mask) for norm_first in (False, True)]

    def builtin_output(case):
        norm_first = case.init[5]
        layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True, norm_first=norm_first)
        builtin = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8) if norm_first else None,
                                        enable_nested_tensor=False).double()
        state = {}
        for i in range(2):
            layer_state = builtin_layer_state(case.state, f"layers.{i}.", {"self_attn": "self_attn"})
            state.update({f"layers.{i}.{key}": value for key, value in layer_state.items()})
        if norm_first:
            state.update({"norm.weight": case.state["norm.weight"], "norm.bias": case.state["norm.bias"]})
        builtin.load_state_dict(state)
        return builtin(case.args[0].double(), mask=builtin_mask(mask, 2, 2, 5, 5))
    return matches_builtin(cases, builtin_output, "With norm_first={case.init[5]} and a padding mask, your Encoder "
                           "differs from nn.TransformerEncoder given the same weights (largest difference {error:.3g}).")


@Encoder.prop("padding invariance: appending padding tokens leaves the real positions' outputs unchanged")
def _(g):
    real = _encoder_case(g, 2, 1, 3, 8, 2, 16, norm_first=True)
    x = real.args[0]
    padded_x = torch.cat([x, randn(g, 1, 2, 8, scale=3)], dim=1)
    padded = Case(f"{real.label.split(' on ')[0]} on {shapes(x=padded_x)}: the same 3 tokens followed by 2 padding "
                  "tokens and their padding mask", (padded_x,), {"mask": padding_mask([3], 5)},
                  init=real.init, state=real.state)
    return outputs_agree([real, padded], "Appending 2 padding tokens (masked out) changed the outputs at the real "
                         "positions: pass the mask to every layer.", lambda out: out[:, :3], lambda out: out)


Encoder.prop("dropout is off in eval mode: with dropout=0.5 the output equals the output without dropout",
             lambda g: dropout_off_in_eval(_encoder_case(g, 2, 2, 4, 8, 2, 16, True), 4, "Encoder"))


Encoder.prop("gradients reach x and every layer",
             lambda g: gradients_flow(_encoder_case(g, 2, 2, 3, 8, 2, 16, norm_first=True),
                                      {"args.0": "x", "params.layers.0.self_attn.q_proj.weight": "layers[0]",
                                       "params.layers.1.ff.linear2.weight": "layers[1]", "params.norm.weight": "norm"}))


@Encoder.mistake("with norm_first=True the final LayerNorm (`norm`) is not applied after the last layer. Pre-norm "
                 "layers leave their output unnormalised, so the stack ends with one LayerNorm.")
def no_final_norm(ref):
    return with_attributes(ref.Encoder, lambda self: {"norm": None})


@Encoder.mistake("each layer is applied to the encoder's input x instead of the previous layer's output, so only "
                 "the last layer counts.")
def layers_read_the_input(ref):
    return with_attributes(ref.Encoder, lambda self: {"layers": nn.ModuleList([self.layers[-1]])})


@Encoder.mistake("the layers run in reverse order: layers[0] comes first.")
def reversed_layers(ref):
    return with_attributes(ref.Encoder, lambda self: {"layers": nn.ModuleList(list(self.layers)[::-1])})


@Encoder.mistake("the mask is not passed to the layers.")
def ignores_mask(ref):
    return ignoring(ref.Encoder, "mask")


@Encoder.mistake("the final LayerNorm is applied after every layer; it is applied once, after the last layer.")
def norm_after_every_layer(ref):
    class Wrong(ref.Encoder):
        def forward(self, x, mask=None):
            if self.norm is None:
                return super().forward(x, mask)
            with contextlib.ExitStack() as stack:
                for layer in list(self.layers)[:-1]:
                    stack.enter_context(patched_forward(
                        layer, lambda original: lambda h, mask=None: self.norm(original(h, mask))))
                return super().forward(x, mask)
    return Wrong


dropout_in_eval(Encoder)


@Encoder.mistake("uses nn.TransformerEncoder", expect="uses torch.nn.TransformerEncoder")
def builtin(ref):
    return also_calls(ref.Encoder, lambda self, x, mask=None: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(x.shape[-1], 1, 4, batch_first=True), 1, enable_nested_tensor=False))


lent_component(Encoder, components.Encoder, "encoder")
