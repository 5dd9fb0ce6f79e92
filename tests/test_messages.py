"""The engine's sentences: each names what is wrong on wrong code, and the reference still passes."""

from __future__ import annotations

import linecache
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from autograder import CheckFailure, check, check_hidden, reference
from autograder.calling import load_weights
from autograder.compare import Hints, article, compare, describe, distinct, plural, sentence
from autograder.errors import CheckFailure as Failure

CPU = torch.device("cpu")
ch02 = reference.load("ch02_embeddings")
ch03 = reference.load("ch03_positional_encoding")
ch04 = reference.load("ch04_scaled_dot_product")


def failure_of(name, impl, layer=check, **kwargs) -> str:
    with pytest.raises(CheckFailure) as failure:
        layer(name, impl, device=CPU, **kwargs)
    message = str(failure.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def passes(name, impl, **kwargs) -> None:
    check(name, impl, device=CPU, **kwargs)
    check_hidden(name, impl, device=CPU, **kwargs)


# ------------------------------------------------------------------------- words
def test_counts_and_articles_are_grammatical():
    assert plural(1, "property") == "1 property" and plural(3, "property") == "3 properties"
    assert plural(1, "wrong entry") == "1 wrong entry" and plural(2, "wrong entry") == "2 wrong entries"
    assert plural(2, "case") == "2 cases" and plural(0, "key") == "0 keys"
    assert article("int64") == "an int64" and article("float32") == "a float32" and article("bool") == "a bool"
    assert article("uint8") == "a uint8" and article("nn.Module") == "an nn.Module"
    assert describe(torch.zeros(2, dtype=torch.int64)) == "an int64 tensor of shape (2,) on cpu"
    assert describe((1,)) == "a tuple of 1 item"


def test_one_wrong_entry_is_singular():
    message = compare(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]), "x")
    assert "x has 1 wrong entry out of 3: at index (2,) it is 3, expected 4." == message


def test_the_pass_line_counts_grammatically(capsys):
    check("nearest_neighbors", ch02.nearest_neighbors, device=CPU)
    assert "(3 cases, 1 property," in capsys.readouterr().out


def test_a_quoted_message_ends_its_sentence_before_ours():
    assert sentence("Use .reshape(...) instead") == "Use .reshape(...) instead."
    assert sentence("done.") == "done." and sentence("") == ""

    def transposed_view(x, dim=-1):
        return ch04.softmax(x.transpose(0, -1).view(-1), 0).reshape(x.shape)

    message = failure_of("softmax", transposed_view)
    assert "Use .reshape(...) instead. In your code, line " in message
    assert "instead. when called" not in message


# ------------------------------------------------------------------------- numbers
def test_precision_failures_show_digits_that_differ():
    assert distinct(1.6731201, 1.6731204) == ("1.6731201", "1.6731204")
    assert distinct(0.25, 0.5) == ("0.25", "0.5")
    got = torch.tensor([1.0, 1.67312004], dtype=torch.float64)
    expected = torch.tensor([1.0, 1.67312001], dtype=torch.float64)
    message = compare(got, expected, "x")
    assert "at index (1,) (got 1.67312004, expected 1.67312001;" in message
    assert compare(1.6731201, 1.6733, "the loss") == "the loss is 1.67312, expected 1.6733."


def test_a_float32_step_in_a_float64_case_is_named():
    def float32_step(x, dim=-1):
        return ch04.softmax(x.float(), dim).to(x.dtype)

    visible = failure_of("softmax", float32_step, dtypes=(torch.float64,))
    got, expected = visible.split("(got ")[1].split(";")[0].split(", expected ")
    assert got != expected
    assert "one step computes in float32" in visible
    hidden = failure_of("softmax", float32_step, layer=check_hidden, dtypes=(torch.float64,))
    assert "one step computes in float32" in hidden and "got " not in hidden
    # A real mistake is not blamed on float32.
    assert (
        "float32"
        not in failure_of("softmax", lambda x, dim=-1: ch04.softmax(x, dim) + 0.25, dtypes=(torch.float64,)).split(
            "(float64)"
        )[1]
    )


def test_infinities_are_compared_as_such():
    expected = torch.tensor([[0.5, float("-inf"), 1.0]])
    got = torch.tensor([[0.5, 0.25, 1.0]])
    message = compare(got, expected, "the filtered logits", hints=Hints(infinity="-inf marks a removed token."))
    assert message == "the filtered logits should be -inf at index (0, 1), but it is 0.25. -inf marks a removed token."
    assert "e+308" not in message
    hidden = compare(got, expected, "x", show_values=False)
    assert hidden == "x has another value where -inf was expected."  # no index, no advice about overflow
    backwards = compare(expected, got, "x", hints=Hints(infinity="Keep the k largest."))
    assert (
        backwards == "x contains -inf (first at index (0, 1)) where a finite number was expected. Keep the k largest."
    )
    generic = compare(torch.tensor([float("nan")]), torch.tensor([1.0]), "x")
    assert "exp() that overflows" in generic
    assert compare(expected.clone(), expected, "x") is None


def test_sympy_is_not_imported_by_a_failing_check():
    """torch.unravel_index imports sympy (1-3 s in a fresh kernel): the engine finds indices without it."""
    program = textwrap.dedent("""
        import sys, torch
        from autograder import check, CheckFailure, reference
        ref = reference.load("ch04_scaled_dot_product")
        try:
            check("softmax", lambda x, dim=-1: ref.softmax(x, dim).index_put((torch.tensor(1), torch.tensor(3)),
                                                                             torch.tensor(0.5, dtype=x.dtype)),
                  device=torch.device("cpu"))
        except CheckFailure as failure:
            assert "at index (1, 3)" in str(failure), str(failure)
        print("sympy" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------- dtypes
def test_dtype_hint_fits_an_exercise_without_tensor_inputs():
    message = failure_of(
        "sinusoidal_positional_encoding",
        lambda max_len, d_model: ch03.sinusoidal_positional_encoding(max_len, d_model).double(),
    )
    assert "should have dtype float32, but it has dtype float64" in message
    assert "Keep the dtype of the inputs" not in message
    assert "float64 for accuracy" in message and ".float()" in message
    passes("sinusoidal_positional_encoding", ch03.sinusoidal_positional_encoding)


def test_dtype_hint_fits_an_exercise_that_changes_the_dtype():
    message = failure_of("one_hot", lambda ids, vocab_size: ch02.one_hot(ids, vocab_size).long())
    assert "should have dtype float32, but it has dtype int64" in message
    assert "Keep the dtype of the inputs" not in message


def test_dtype_hint_for_floating_inputs_says_keep_their_dtype():
    message = failure_of("softmax", lambda x, dim=-1: ch04.softmax(x, dim).double(), dtypes=(torch.float32,))
    assert "Keep the dtype of the inputs" in message


# ------------------------------------------------------------------------- module attributes
class ManyWrongNames(nn.Module):
    def __init__(self, d_model, d_k):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d_model, d_k) for _ in range(44))

    def forward(self, x, mask=None):
        return x, x


def test_wrong_attribute_names_get_a_short_list():
    message = failure_of("SelfAttention", ManyWrongNames)
    assert len(message) < 400
    assert (
        "missing W_k.weight (4, 4), W_q.weight (4, 4), W_v.weight (4, 4); unexpected layers.0.weight (4, 4)" in message
    )
    assert "and 84 more" in message


def test_one_renamed_attribute_is_named():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.W_q, self.W_k = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Inner()

    state = {"self_attn.W_q.weight": torch.zeros(3, 3), "self_attn.W_k.weight": torch.zeros(3, 3)}
    with pytest.raises(Failure, match="Rename the attribute `attn` to `self_attn`."):
        load_weights(Outer(), state, "Layer")


def test_a_bias_where_none_is_expected_says_bias_false():
    class WithBias(ch04.SelfAttention):
        def __init__(self, d_model, d_k):
            super().__init__(d_model, d_k)
            self.W_v = nn.Linear(d_model, d_k)

    assert failure_of("SelfAttention", WithBias).endswith(
        "unexpected W_v.bias (4,). The checks expect these layers made with bias=False."
    )


class PlainTensor(nn.Module):
    def __init__(self, max_len, d_model):
        super().__init__()
        self.weight = torch.randn(max_len, d_model)

    def forward(self, x):
        if x.shape[1] > self.weight.shape[0]:
            raise ValueError("too long")
        return x + self.weight[: x.shape[1]]


class Product(PlainTensor):
    def __init__(self, max_len, d_model):
        nn.Module.__init__(self)
        self.weight = nn.Parameter(torch.randn(max_len, d_model)) * 0.02


class Buffer(PlainTensor):
    def __init__(self, max_len, d_model):
        nn.Module.__init__(self)
        self.register_buffer("weight", torch.randn(max_len, d_model))


@pytest.mark.parametrize(
    "wrong,expected",
    [
        (PlainTensor, "`LearnedPositionalEmbedding.weight` is a plain tensor, not an nn.Parameter"),
        (Product, "is a tensor computed from an nn.Parameter (such as nn.Parameter(t) * 0.02)"),
        (Buffer, "is a buffer (register_buffer), not an nn.Parameter"),
    ],
    ids=["plain", "product", "buffer"],
)
def test_an_attribute_that_is_not_a_parameter_is_named(wrong, expected):
    message = failure_of("LearnedPositionalEmbedding", wrong)
    assert expected in message and "bias=False" not in message
    passes("LearnedPositionalEmbedding", ch03.LearnedPositionalEmbedding)


def test_a_norm_without_its_weights_is_named():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4, elementwise_affine=False)

    with pytest.raises(Failure, match=r"`Block.norm.weight` is None: .*elementwise_affine=False"):
        load_weights(Block(), {"norm.weight": torch.ones(4), "norm.bias": torch.zeros(4)}, "Block")


# ------------------------------------------------------------------------- the student's exceptions
def test_the_students_line_is_shown_for_a_notebook_cell():
    filename = "/tmp/ipykernel_4242/1234567.py"
    source = "def softmax(x, dim=-1):\n    return x.sum(dim) @ x.unsqueeze(5)\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {}
    exec(compile(source, filename, "exec"), namespace)
    message = failure_of("softmax", namespace["softmax"])
    assert message.startswith("`softmax` raised IndexError when called with x (4, 6): Dimension out of range")
    assert message.endswith("In your code, line 2: `return x.sum(dim) @ x.unsqueeze(5)`.")


def test_not_implemented_inside_torch_is_not_an_unwritten_stub():
    def pools_bytes(x, dim=-1):
        return torch.nn.functional.avg_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.uint8), 2)

    message = failure_of("softmax", pools_bytes)
    assert "not written yet" not in message
    assert message.startswith("`softmax` raised NotImplementedError when called with x (4, 6): ")
    assert "In your code, line " in message and "avg_pool2d(" in message


def test_the_untouched_stub_is_not_written_yet_and_so_is_a_stub_it_calls():
    def softmax(x, dim=-1):
        raise NotImplementedError()

    assert failure_of("softmax", softmax).startswith("`softmax` is not written yet")

    class SelfAttention(ch04.SelfAttention):
        def forward(self, x, mask=None):
            return scaled_dot_product_attention(self.W_q(x), self.W_k(x), self.W_v(x), mask)

    def scaled_dot_product_attention(q, k, v, mask=None):
        raise NotImplementedError()

    assert failure_of("SelfAttention", SelfAttention).startswith(
        "`SelfAttention` calls `test_the_untouched_stub_is_not_written_yet_and_so_is_a_stub_it_calls.<locals>."
        "scaled_dot_product_attention`, which is not written yet"
    )

    class Stub(nn.Module):
        def __init__(self, d_model, d_k):
            super().__init__()
            raise NotImplementedError()

    assert "is not written yet" in failure_of("SelfAttention", Stub)


# ------------------------------------------------------------------------- inputs changed in place
def test_an_input_normalised_in_place_is_named():
    def nearest_neighbors(E, idx, k):
        E /= E.norm(dim=-1, keepdim=True)
        return ch02.nearest_neighbors(E, idx, k)

    message = failure_of("nearest_neighbors", nearest_neighbors)
    assert message.startswith("`nearest_neighbors` changed its argument `E` in place when called with E (")
    assert "x /= n" in message
    passes("nearest_neighbors", ch02.nearest_neighbors)


def test_a_list_sorted_in_place_is_named():
    def build_vocab(corpus, min_freq=1):
        corpus.sort()
        return ch02.build_vocab(corpus, min_freq)

    message = failure_of("build_vocab", build_vocab, dtypes=(None,))
    assert "`build_vocab` changed its argument `corpus` in place" in message and "sorted(items)" in message


def test_a_keyword_argument_changed_in_place_is_named():
    def scaled_dot_product_attention(q, k, v, mask=None):
        out = ch04.scaled_dot_product_attention(q, k, v, mask)
        if mask is not None:
            mask.fill_(True)
        return out

    assert "changed its argument `mask` in place" in failure_of(
        "scaled_dot_product_attention", scaled_dot_product_attention
    )


# ------------------------------------------------------------------------- chapters 1-7: wrong code as students write it
ch01 = reference.load("ch01_why_attention")
ch05 = reference.load("ch05_attention_types")
ch07 = reference.load("ch07_masking")


def _rnn(x, W_xh, W_hh, b_h, h=None, keep=lambda h: h, store=lambda h: h, nonlinearity=torch.tanh):
    h = x.new_zeros(W_hh.shape[0]) if h is None else h
    states = []
    for x_t in x:
        h = nonlinearity(x_t @ W_xh + keep(h) @ W_hh + b_h)
        states.append(store(h))
    return torch.stack(states), h


@pytest.mark.parametrize(
    "wrong,expected",
    [
        (
            lambda x, W_xh, W_hh, b_h: _rnn(x, W_xh, W_hh, b_h, store=torch.Tensor.detach),
            "Your outputs are right, so some path from `x` to them is cut or changed.",
        ),
        (
            lambda x, W_xh, W_hh, b_h: _rnn(x, W_xh, W_hh, b_h, keep=torch.Tensor.detach),
            "Your outputs are right, so some path from `x` to them is cut or changed.",
        ),
        (lambda x, W_xh, W_hh, b_h: _rnn(x, W_xh, W_hh, b_h, nonlinearity=lambda z: z), "tanh is missing"),
        (
            lambda x, W_xh, W_hh, b_h: _rnn(x, W_xh, W_hh, b_h, h=torch.ones_like(b_h)),
            "the state does not start at zero",
        ),
    ],
    ids=["detached-outputs", "detached-state", "no-tanh", "h0-ones"],
)
def test_rnn_encode_mistakes_are_named(wrong, expected):
    assert expected in failure_of("rnn_encode", wrong)
    assert expected in failure_of("rnn_encode", wrong, layer=check_hidden)
    passes("rnn_encode", ch01.rnn_encode)


def test_nearest_neighbors_in_ascending_order_is_told_the_order():
    def ascending(E, idx, k):
        sims = ch02.cosine_similarity_matrix(E)[idx].clone()
        sims[idx] = float("-inf")
        return sims.topk(k).indices.flip(0)

    message = failure_of("nearest_neighbors", ascending)
    assert "the right rows in the wrong order" in message and "Euclidean" not in message


def test_embedding_lookup_by_columns_is_named():
    message = failure_of("embedding_lookup", lambda ids, weight: weight[:, ids])
    assert "should have shape (4, 5), but it has shape (6, 4)" in message
    assert "the ids index the columns (weight[:, ids])" in message


def test_cross_attention_reading_keys_and_values_from_x_is_named():
    class SelfAttentionOnX(ch05.CrossAttention):
        def forward(self, x, memory, mask=None):
            return ch05.attention(self.W_q(x), self.W_k(x), self.W_v(x), mask)

    class KeysFromX(ch05.CrossAttention):
        def forward(self, x, memory, mask=None):
            return ch05.attention(self.W_q(x), self.W_k(x), self.W_v(memory), mask)

    assert "this is self-attention on x" in failure_of("CrossAttention", SelfAttentionOnX)
    assert "the keys are made from x" in failure_of("CrossAttention", KeysFromX)
    passes("CrossAttention", ch05.CrossAttention)


def test_additive_attention_with_the_softmax_over_the_queries_is_named():
    def over_queries(q, k, v, W_q, W_k, w_v):
        scores = torch.tanh((q @ W_q).unsqueeze(-2) + (k @ W_k).unsqueeze(-3)) @ w_v
        weights = torch.softmax(scores, dim=-2)
        return weights @ v, weights

    assert "the softmax runs over the queries" in failure_of("additive_attention", over_queries)
    passes("additive_attention", ch05.additive_attention)


def test_masked_softmax_with_the_maximum_over_masked_keys_is_named():
    def max_over_all(scores, mask):
        exps = (scores - scores.amax(-1, keepdim=True)).exp().masked_fill(~mask, 0.0)
        total = exps.sum(-1, keepdim=True)
        return exps / total.masked_fill(total == 0, 1.0)

    scores, mask = torch.tensor([2.0, 1.0, 120.0]), torch.tensor([True, True, False])
    assert max_over_all(scores, mask).tolist() == [0.0, 0.0, 0.0]  # the wrong version the issue found
    message = failure_of("masked_softmax", max_over_all)
    assert "(masked scores of 1e4, far above the allowed ones)" in message
    assert "the largest score is taken over all the keys, masked ones included" in message
    passes("masked_softmax", ch07.masked_softmax)


def test_a_positional_table_that_never_raises_for_long_inputs_fails_visibly():
    class NoLengthCheck(nn.Module):
        def __init__(self, max_len, d_model):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

        def forward(self, x):
            return x + self.weight[: x.shape[1]]

    message = failure_of("LearnedPositionalEmbedding", NoLengthCheck)
    assert message.startswith(
        "For an input longer than max_len, LearnedPositionalEmbedding should raise ValueError. "
        "Instead: `LearnedPositionalEmbedding` raised RuntimeError"
    )
    assert "In your code, line " in message
