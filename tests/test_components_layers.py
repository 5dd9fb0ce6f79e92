"""The layers and the Transformer lent to later chapters keep their chapters' contract,
equal PyTorch's own layers given the same weights, and are exempt from the forbidden-call watch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder import components
from autograder.components import DecoderLayer, Encoder, EncoderLayer, PositionwiseFeedForward, Transformer
from autograder.forbidden import watch

D_MODEL, N_HEADS, D_FF = 8, 2, 16


def _attention_state(prefix: str, attn, builtin_prefix: str) -> dict:
    return {
        f"{builtin_prefix}.in_proj_weight": torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
        f"{builtin_prefix}.in_proj_bias": torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]),
        f"{builtin_prefix}.out_proj.weight": attn.out_proj.weight,
        f"{builtin_prefix}.out_proj.bias": attn.out_proj.bias,
    }


def _layer_state(ours, n_norms: int) -> dict:
    """Our layer's weights under the names of nn.TransformerEncoderLayer / nn.TransformerDecoderLayer."""
    state = _attention_state("self_attn", ours.self_attn, "self_attn")
    if hasattr(ours, "cross_attn"):
        state.update(_attention_state("cross_attn", ours.cross_attn, "multihead_attn"))
    for i in (1, 2):
        state[f"linear{i}.weight"] = getattr(ours.ff, f"linear{i}").weight
        state[f"linear{i}.bias"] = getattr(ours.ff, f"linear{i}").bias
    for i in range(1, n_norms + 1):
        norm = getattr(ours, f"norm{i}")
        state[f"norm{i}.weight"], state[f"norm{i}.bias"] = norm.weight, norm.bias
    return state


def _randomize_norms(module: nn.Module) -> None:
    """LayerNorms start at weight 1, bias 0; random values make the comparisons meaningful."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)


def _padding(lengths, max_len: int) -> torch.Tensor:
    return torch.arange(max_len)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward_equals_the_builtin_block(activation):
    torch.manual_seed(0)
    ours = PositionwiseFeedForward(D_MODEL, D_FF, activation=activation).double()
    builtin = nn.TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF, 0.0, activation, batch_first=True).double()
    builtin.linear1.load_state_dict(ours.linear1.state_dict())
    builtin.linear2.load_state_dict(ours.linear2.state_dict())
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(ours(x), builtin._ff_block(x))
    assert [name for name, _ in ours.named_parameters()] == [
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
    ]


def test_feed_forward_refuses_an_unknown_activation():
    with pytest.raises(ValueError, match="'relu' or 'gelu'"):
        PositionwiseFeedForward(D_MODEL, D_FF, activation="tanh")


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_encoder_layer_equals_the_builtin(norm_first, training):
    torch.manual_seed(1)
    ours = EncoderLayer(D_MODEL, N_HEADS, D_FF, norm_first=norm_first).double()
    _randomize_norms(ours)
    builtin = nn.TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF, 0.0, batch_first=True, norm_first=norm_first).double()
    builtin.load_state_dict(_layer_state(ours, 2))
    ours.train(training), builtin.train(training)
    x = torch.randn(3, 5, D_MODEL, dtype=torch.float64)
    real = _padding([5, 3, 1], 5)
    with torch.set_grad_enabled(training):  # eval without grad is where PyTorch takes its fast path
        torch.testing.assert_close(ours(x, real[:, None, None, :]), builtin(x, src_key_padding_mask=~real))
        torch.testing.assert_close(ours(x), builtin(x))


def test_encoder_layer_accepts_a_full_mask_per_head():
    torch.manual_seed(2)
    ours = EncoderLayer(D_MODEL, N_HEADS, D_FF).double()
    builtin = nn.TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF, 0.0, batch_first=True).double()
    builtin.load_state_dict(_layer_state(ours, 2))
    x = torch.randn(2, 4, D_MODEL, dtype=torch.float64)
    mask = torch.rand(2, N_HEADS, 4, 4) < 0.6
    mask[..., 0] = True
    torch.testing.assert_close(ours(x, mask), builtin(x, src_mask=~mask.reshape(2 * N_HEADS, 4, 4)))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_equals_the_builtin_stack(norm_first):
    torch.manual_seed(3)
    ours = Encoder(2, D_MODEL, N_HEADS, D_FF, norm_first=norm_first).double()
    _randomize_norms(ours)
    assert (ours.norm is None) != norm_first
    layer = nn.TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF, 0.0, batch_first=True, norm_first=norm_first)
    builtin = nn.TransformerEncoder(
        layer, 2, norm=nn.LayerNorm(D_MODEL) if norm_first else None, enable_nested_tensor=False
    ).double()
    for ours_layer, builtin_layer in zip(ours.layers, builtin.layers):
        builtin_layer.load_state_dict(_layer_state(ours_layer, 2))
    if norm_first:
        builtin.norm.load_state_dict(ours.norm.state_dict())
    x = torch.randn(2, 6, D_MODEL, dtype=torch.float64)
    real = _padding([6, 2], 6)
    torch.testing.assert_close(ours(x, real[:, None, None, :]), builtin(x, src_key_padding_mask=~real))


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_the_builtin(norm_first):
    torch.manual_seed(4)
    ours = DecoderLayer(D_MODEL, N_HEADS, D_FF, norm_first=norm_first).double()
    _randomize_norms(ours)
    builtin = nn.TransformerDecoderLayer(D_MODEL, N_HEADS, D_FF, 0.0, batch_first=True, norm_first=norm_first).double()
    builtin.load_state_dict(_layer_state(ours, 3))
    x, memory = torch.randn(3, 4, D_MODEL, dtype=torch.float64), torch.randn(3, 6, D_MODEL, dtype=torch.float64)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    source = _padding([6, 2, 4], 6)
    got = ours(x, memory, tgt_mask=causal, memory_mask=source[:, None, None, :])
    expected = builtin(x, memory, tgt_mask=~causal, memory_key_padding_mask=~source)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ours(x, memory), builtin(x, memory))


def test_layers_pass_gradients_to_every_parameter():
    torch.manual_seed(5)
    for layer, inputs in [
        (EncoderLayer(D_MODEL, N_HEADS, D_FF), (torch.randn(2, 3, D_MODEL),)),
        (DecoderLayer(D_MODEL, N_HEADS, D_FF), (torch.randn(2, 3, D_MODEL), torch.randn(2, 5, D_MODEL))),
    ]:
        layer(*inputs).pow(2).sum().backward()
        missing = [name for name, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{type(layer).__name__}: no gradient for {missing}"


def test_layers_follow_the_module_to_float64():
    layer = DecoderLayer(D_MODEL, N_HEADS, D_FF).double()
    out = layer(torch.randn(1, 2, D_MODEL, dtype=torch.float64), torch.randn(1, 3, D_MODEL, dtype=torch.float64))
    assert out.dtype == torch.float64


# --- the Transformer ---------------------------------------------------------------------------

SRC_VOCAB, TGT_VOCAB = 11, 13


def _model(**kwargs) -> Transformer:
    torch.manual_seed(6)
    model = Transformer(SRC_VOCAB, TGT_VOCAB, d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=20, **kwargs)
    _randomize_norms(model)
    return model.double().eval()


def _tokens(*shape, vocab) -> torch.Tensor:
    return torch.randint(1, vocab, shape)  # 0 is pad_id


def test_transformer_interface_shapes_and_dtype():
    model = _model()
    src, tgt = _tokens(3, 7, vocab=SRC_VOCAB), _tokens(3, 5, vocab=TGT_VOCAB)
    memory = model.encode(src)
    assert memory.shape == (3, 7, 16) and memory.dtype == torch.float64
    logits = model(src, tgt)
    assert logits.shape == (3, 5, TGT_VOCAB) and logits.dtype == torch.float64
    torch.testing.assert_close(model.decode(tgt, memory, src), logits)
    assert Transformer(SRC_VOCAB, TGT_VOCAB)(src, tgt).dtype == torch.float32
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert names == {"src_embed", "tgt_embed", "encoder", "decoder_layers", "out_proj"}
    assert all(key.split(".")[0] in names for key in model.state_dict()), "the sinusoids are not learned, not saved"


def test_transformer_equals_the_builtin_stacks():
    """Embeddings * sqrt(d_model) + sinusoids, PyTorch's encoder and decoder stacks, a linear projection."""
    model = _model()
    src = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 9, 10, 2, 1]])
    tgt = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    enc_layer = nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True)
    dec_layer = nn.TransformerDecoderLayer(16, 2, 32, 0.0, batch_first=True)
    encoder = nn.TransformerEncoder(enc_layer, 2, enable_nested_tensor=False).double()
    decoder = nn.TransformerDecoder(dec_layer, 2).double()
    for ours, theirs in zip(model.encoder.layers, encoder.layers):
        theirs.load_state_dict(_layer_state(ours, 2))
    for ours, theirs in zip(model.decoder_layers, decoder.layers):
        theirs.load_state_dict(_layer_state(ours, 3))

    position = torch.arange(20, dtype=torch.float64)[:, None]
    angle = position / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    pe = torch.zeros(20, 16, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()

    def embed(table, ids):
        return table.weight[ids] * math.sqrt(16) + pe[: ids.shape[1]]

    src_pad, tgt_pad = src == 0, tgt == 0
    memory = encoder(embed(model.src_embed, src), src_key_padding_mask=src_pad)
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)
    hidden = decoder(
        embed(model.tgt_embed, tgt),
        memory,
        tgt_mask=causal,
        tgt_key_padding_mask=tgt_pad,
        memory_key_padding_mask=src_pad,
    )
    expected = hidden @ model.out_proj.weight.T + model.out_proj.bias
    torch.testing.assert_close(model(src, tgt), expected)


def test_transformer_is_causal():
    model = _model()
    src, tgt = _tokens(2, 6, vocab=SRC_VOCAB), _tokens(2, 7, vocab=TGT_VOCAB)
    changed = tgt.clone()
    changed[:, 4:] = (changed[:, 4:] % (TGT_VOCAB - 1)) + 1  # other real tokens from position 4 on
    before, after = model(src, tgt), model(src, changed)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_transformer_ignores_padding():
    model = _model()
    src, tgt = _tokens(2, 5, vocab=SRC_VOCAB), _tokens(2, 4, vocab=TGT_VOCAB)
    padded_src = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    padded_tgt = torch.cat([tgt, torch.zeros(2, 2, dtype=torch.long)], dim=1)
    expected = model(src, tgt)
    torch.testing.assert_close(model(padded_src, tgt), expected)
    torch.testing.assert_close(model(padded_src, padded_tgt)[:, :4], expected)
    assert torch.isfinite(model(padded_src, padded_tgt)).all()


def test_transformer_pad_id_is_configurable():
    model = _model(pad_id=2)
    src, tgt = _tokens(1, 4, vocab=SRC_VOCAB), _tokens(1, 3, vocab=TGT_VOCAB)
    src[src == 2], tgt[tgt == 2] = 3, 3
    padded = torch.cat([src, torch.full((1, 2), 2)], dim=1)
    torch.testing.assert_close(model(padded, tgt), model(src, tgt))


def test_transformer_trains():
    """A few steps of Adam lower the loss on a fixed batch: gradients reach the model and it learns."""
    torch.manual_seed(7)
    model = Transformer(SRC_VOCAB, TGT_VOCAB, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=20)
    src, tgt = _tokens(8, 6, vocab=SRC_VOCAB), _tokens(8, 5, vocab=TGT_VOCAB)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_transformer_says_what_is_wrong_with_bad_input():
    model = _model()
    with pytest.raises(ValueError, match="longer than max_len=20"):
        model.encode(_tokens(1, 21, vocab=SRC_VOCAB))
    with pytest.raises(ValueError, match="LongTensor of shape"):
        model.encode(torch.rand(1, 4))
    with pytest.raises(ValueError, match="must be even"):
        Transformer(SRC_VOCAB, TGT_VOCAB, d_model=15, n_heads=3)


# --- the forbidden-call watch --------------------------------------------------------------------

EVERY_BUILTIN = (
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.Transformer,
    nn.MultiheadAttention,
    nn.LayerNorm,
    nn.Linear,
    nn.Embedding,
    F.multi_head_attention_forward,
    F.scaled_dot_product_attention,
    F.layer_norm,
    F.linear,
    F.embedding,
    F.relu,
    F.gelu,
    torch.softmax,
    F.softmax,
)


def test_components_do_not_count_as_forbidden_calls():
    src, tgt = _tokens(2, 4, vocab=SRC_VOCAB), _tokens(2, 3, vocab=TGT_VOCAB)
    with watch(EVERY_BUILTIN) as used:
        model = Transformer(SRC_VOCAB, TGT_VOCAB, d_model=8, n_heads=2, n_layers=1, d_ff=16)
        model(src, tgt).sum().backward()
        Encoder(1, D_MODEL, N_HEADS, D_FF, norm_first=True)(torch.randn(1, 3, D_MODEL))
        PositionwiseFeedForward(D_MODEL, D_FF, activation="gelu")(torch.randn(2, D_MODEL))
    assert used == []


@pytest.mark.parametrize(
    "component",
    [
        components.PositionwiseFeedForward,
        components.EncoderLayer,
        components.Encoder,
        components.DecoderLayer,
        components.Transformer,
    ],
)
def test_a_student_reusing_the_component_of_the_exercise_is_seen(component):
    """An exercise may forbid its own lent component: a subclass or alias made by the student is recorded."""

    class Mine(component):
        pass

    args = {
        components.PositionwiseFeedForward: (D_MODEL, D_FF),
        components.EncoderLayer: (D_MODEL, N_HEADS, D_FF),
        components.Encoder: (1, D_MODEL, N_HEADS, D_FF),
        components.DecoderLayer: (D_MODEL, N_HEADS, D_FF),
        components.Transformer: (SRC_VOCAB, TGT_VOCAB),
    }[component]
    with watch((component,)) as used:
        Mine(*args)
    assert used == [component]
    with watch((component,)) as used:
        component(*args)
    assert used == [component]


def test_the_two_layers_share_one_init_and_are_watched_apart():
    """EncoderLayer and DecoderLayer share their __init__, each holding it as its own entry (the watch wraps only a
    class's own): forbidding one does not count the other."""
    layers = (components.EncoderLayer, components.DecoderLayer)
    for watched, other in (layers, layers[::-1]):
        assert "__init__" in vars(watched)
        with watch((watched,)) as used:
            other(D_MODEL, N_HEADS, D_FF)
        assert used == []
