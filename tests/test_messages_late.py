"""Chapters 8-14: each sentence names what is wrong on wrong code, and honest code still passes.

Wrong versions are built from the reference (a subclass, or the reference's own code run with
one name rebound), so that no solution is written out here.
"""

from __future__ import annotations

import types

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from torch import nn

from autograder import CheckFailure, check, check_hidden, reference
from autograder.exercises import EXERCISES
from autograder.exercises.ch12_training import EOS_ID, VOCAB_SIZE, _one_hot_logits
from autograder.forbidden import capabilities, scan_forbidden
from autograder.grading import _student_code

CPU = torch.device("cpu")
ch08 = reference.load("ch08_residual_norm_ffn")
ch11 = reference.load("ch11_decoding")
ch12 = reference.load("ch12_training")
ch13 = reference.load("ch13_efficient_inference")
ch14 = reference.load("ch14_vision")


def failure_of(name, impl, layer=check) -> str:
    with pytest.raises(CheckFailure) as failure:
        layer(name, impl, device=CPU)
    message = str(failure.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def passes(name, impl) -> None:
    check(name, impl, device=CPU)
    check_hidden(name, impl, device=CPU)


def rebound(function, **names):
    """``function`` run with some of its global names bound to other objects (a student's own helpers)."""
    return types.FunctionType(
        function.__code__,
        {**function.__globals__, **names},
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )


def notebook_text(assignment: str) -> str:
    notebook = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", 4)
    return "\n".join(cell.source for cell in notebook.cells)


# ------------------------------------------------------------------------- ch08: dropout and eval mode
class FunctionalDropout(nn.Module):
    """`F.dropout(h, p)` as a student writes it in forward; ``follow_mode`` adds ``training=self.training``."""

    def __init__(self, p: float, follow_mode: bool):
        super().__init__()
        self.p, self.follow_mode = p, follow_mode

    def forward(self, h):
        return F.dropout(h, self.p, training=self.training) if self.follow_mode else F.dropout(h, self.p)


def with_functional_dropout(base, follow_mode: bool):
    class Student(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.dropout = FunctionalDropout(self.dropout.p, follow_mode)

    return Student


@pytest.mark.parametrize("name", ["PositionwiseFeedForward", "SublayerConnection"])
def test_dropout_that_stays_on_in_eval_mode_is_named(name):
    message = failure_of(name, with_functional_dropout(getattr(ch08, name), follow_mode=False))
    assert message.startswith("In eval mode (after model.eval()) dropout must do nothing")
    assert "training=self.training" in message
    passes(name, with_functional_dropout(getattr(ch08, name), follow_mode=True))


def test_a_feed_forward_network_that_accepts_any_activation_is_named():
    class Student(ch08.PositionwiseFeedForward):
        def __init__(self, d_model, d_ff, dropout=0.0, activation="relu"):
            super().__init__(d_model, d_ff, dropout, "gelu" if activation == "gelu" else "relu")

    assert failure_of("PositionwiseFeedForward", Student) == (
        "PositionwiseFeedForward(4, 8, activation='tanh') should raise ValueError (only 'relu' and 'gelu' are "
        "allowed), but it made a module."
    )

    class RaisesOther(ch08.PositionwiseFeedForward):
        def __init__(self, d_model, d_ff, dropout=0.0, activation="relu"):
            if activation not in ("relu", "gelu"):
                raise KeyError(activation)
            super().__init__(d_model, d_ff, dropout, activation)

    assert failure_of("PositionwiseFeedForward", RaisesOther).startswith(
        "For activation='tanh', PositionwiseFeedForward should raise ValueError. Instead: "
        "`PositionwiseFeedForward` raised KeyError"
    )


def test_a_layer_norm_without_its_parameters_is_told_so():
    class Student(ch08.SublayerConnection):
        def __init__(self, d_model, dropout=0.0, norm_first=False):
            super().__init__(d_model, dropout, norm_first)
            self.norm = nn.LayerNorm(d_model, elementwise_affine=False)

    message = failure_of("SublayerConnection", Student)
    assert "elementwise_affine=False" in message and "bias=False" not in message


# ------------------------------------------------------------------------- ch10: the instructions
def test_ch10_pseudocode_keeps_the_output_of_the_attention_tuple():
    text = notebook_text("ch10_decoder")
    assert ").out" not in text
    assert "each attention returns a tuple (output, weights)" in text


def test_ch10_page_and_notebook_name_the_builtins_the_transformer_check_forbids():
    from autograder.exercises import get

    forbidden = {
        name for capability in capabilities(get("Transformer").forbidden) for name in capability.source_names()
    }
    assert forbidden == {"Transformer"}  # nn.Transformer and the lent components.Transformer
    page = (ROOT / "book" / "ch10_decoder.md").read_text()
    assert (
        "`Transformer` may not use `nn.Transformer`, nor the ready-made\n`Transformer` of `autograder.components`."
    ) in page
    assert (
        "may not use\n`nn.Transformer`, nor the ready-made `Transformer` of `autograder.components`."
        in notebook_text("ch10_decoder")
    )


# ------------------------------------------------------------------------- ch11: decoding
def test_greedy_decoding_that_calls_the_model_at_max_len_1_is_told_so():
    def student(step_fn, bos_id, eos_id, max_len):
        tokens = [bos_id]
        while True:  # one step before the first test of the length
            tokens.append(int(step_fn(torch.tensor(tokens)).argmax()))
            if tokens[-1] == eos_id or len(tokens) >= max_len:
                return tokens

    message = failure_of("greedy_decode", student)
    assert "step_fn was called with a prefix of 1 tokens although max_len is 1" in message


def test_decoding_that_goes_on_after_eos_is_told_that_the_sequence_was_complete():
    def student(step_fn, bos_id, eos_id, max_len):
        tokens = [bos_id]
        while len(tokens) < max_len:  # never stops at eos
            tokens.append(int(step_fn(torch.tensor(tokens)).argmax()))
        return tokens

    message = failure_of("greedy_decode", student)
    assert "already holds eos_id=3: decoding goes on after eos, but a sequence is complete once it ends" in message

    def beam(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0):
        return ch11.beam_search(step_fn, bos_id, -1, beam_size, max_len, length_penalty)  # eos never set aside

    assert "set that hypothesis aside as finished and never extend it" in failure_of("beam_search", beam)


def test_a_beam_search_whose_winner_is_the_plain_sum_is_not_called_greedy():
    def student(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0):
        tokens, total = ch11.beam_search(step_fn, bos_id, eos_id, beam_size, max_len, 0.0)
        return tokens, total / (len(tokens) - 1) ** length_penalty  # the right score, the wrong winner

    for layer in (check, check_hidden):
        message = failure_of("beam_search", student, layer)
        assert "the final winner is chosen by the plain sum of log-probabilities" in message
        assert "that is greedy decoding" not in message


@pytest.mark.parametrize("name,cutoff", [("top_k_filter", 3), ("top_p_filter", 0.8)])
def test_filters_are_told_what_minus_infinity_means_here(name, cutoff):
    def student(logits, cutoff):
        kept = getattr(ch11, name)(logits, cutoff)
        return kept.masked_fill(torch.isneginf(kept), -1e9)  # a large negative number instead of -inf

    message = failure_of(name, student)
    assert "should be -inf at index" in message and "but it is -1e+09" in message
    assert "Here -inf marks a dropped token" in message
    assert "exp() that overflows" not in message


# ------------------------------------------------------------------------- ch12: training
class Perfect(ch12.Transformer):
    """A model that reverses every sequence, made without training (a stand-in for a good run)."""

    def decode(self, tgt, memory, src):
        answer = torch.cat([src.flip(1), torch.full_like(src[:, :1], EOS_ID)], 1)
        steps = min(tgt.shape[1], answer.shape[1])
        logits = _one_hot_logits(answer[:, :steps], self)
        return torch.cat([logits, logits[:, -1:].expand(-1, tgt.shape[1] - steps, -1)], 1)


def test_a_passing_training_reports_its_accuracy_and_cpu_time(capsys):
    def student(seed):
        return Perfect(VOCAB_SIZE, VOCAB_SIZE)

    passes("train_reversal_model", student)
    lines = capsys.readouterr().out.splitlines()
    for line, layer in zip(lines, ("visible", "hidden")):
        assert line.startswith(
            f"\u2714 train_reversal_model: {layer} checks passed (greedy decoding reverses "
            "100% of 180 test sequences exactly; training took "
        )
        assert line.endswith(" s of CPU time, the limit is 120 s).")
        assert "cases" not in line and "properties" not in line


BUILTIN_LOSSES = {  # the routes to torch's cross entropy a training loop could take, and the name each is told
    "cross_entropy": (lambda logits, target: F.cross_entropy(logits, target), "torch.nn.functional.cross_entropy"),
    "module": (lambda logits, target: nn.CrossEntropyLoss()(logits, target), "torch.nn.CrossEntropyLoss"),
    "private": (lambda logits, target: torch._C._nn.cross_entropy_loss(logits, target), "cross_entropy_loss"),
    "nll_loss": (lambda logits, target: F.nll_loss(logits.log_softmax(-1), target), "torch.nn.functional.nll_loss"),
}


@pytest.mark.parametrize("route", sorted(BUILTIN_LOSSES))
def test_training_with_the_builtin_loss_fails_both_checks_even_when_the_model_is_reused(route):
    loss, named = BUILTIN_LOSSES[route]

    def student(seed):
        model = Perfect(VOCAB_SIZE, VOCAB_SIZE)
        src, tgt_in, tgt_out = ch12.make_reversal_batch(4, 3, VOCAB_SIZE, torch.Generator().manual_seed(seed))
        logits = model(src, tgt_in).flatten(0, 1).requires_grad_()
        loss(logits, tgt_out.flatten()).backward()
        return model

    for layer in (check, check_hidden):  # the hidden check reuses the visible check's training
        message = failure_of("train_reversal_model", student, layer)
        assert message.startswith("`train_reversal_model` uses ") and named in message.split(",")[0], message
        assert "which this exercise asks you not to use" in message


def test_a_model_that_learned_some_lengths_is_told_about_lengths_not_learning_rates():
    class ShortOnly(Perfect):
        def decode(self, tgt, memory, src):
            logits = super().decode(tgt, memory, src)
            return logits if src.shape[1] <= 4 else logits.roll(1, dims=-1)

    message = failure_of("train_reversal_model", lambda seed: ShortOnly(VOCAB_SIZE, VOCAB_SIZE))
    assert "(by length: 1: 100%, 2: 100%, 3: 100%, 4: 100%, 5: 0%, 6: 0%)" in message
    assert "Its cross-entropy on the test sequences, with the right previous tokens given, is " in message
    assert "It has learned some lengths and not others (5, 6): train on every length" in message
    assert "learning rate" not in message


def test_the_instructions_say_cpu_time():
    text = notebook_text("ch12_training")
    assert "**at most 120 s of CPU time**" in text and "about 15 s" in text and "about 20 s" not in text
    page = (ROOT / "book" / "ch12_training.md").read_text()
    assert "about 15 s of CPU time" in page and "half a minute" not in page


# ------------------------------------------------------------------------- ch13: efficient inference
def test_cached_attention_step_may_use_scaled_dot_product_attention():
    def student(mha, x_t, cache):
        def heads(t):
            return t.unflatten(-1, (mha.n_heads, -1)).transpose(1, 2)

        cache.append(heads(mha.k_proj(x_t)), heads(mha.v_proj(x_t)))
        out = F.scaled_dot_product_attention(heads(mha.q_proj(x_t)), cache.k, cache.v)
        return mha.out_proj(out.transpose(1, 2).flatten(-2))

    passes("cached_attention_step", student)
    assert "this exercise allows it" in notebook_text("ch13_efficient_inference")


def test_the_source_scan_of_tiled_attention_leaves_the_cached_step_cell_alone():
    path = ROOT / "exercises" / "ch13_efficient_inference" / "ch13_efficient_inference.ipynb"
    notebook = nbformat.read(path, 4)
    cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "cached_attention_step")
    cell.source += "\n    return torch.nn.functional.scaled_dot_product_attention(q, k, v)"
    test_cell = next(
        i
        for i, c in enumerate(notebook.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_tiled_attention"
    )
    assert scan_forbidden(_student_code(notebook), EXERCISES["tiled_attention"], before=test_cell) is None
    assert scan_forbidden(_student_code(notebook), EXERCISES["cached_attention_step"], before=test_cell) is None


def test_the_memory_meter_has_a_public_home_and_the_page_uses_it():
    from autograder.tools import TensorMemoryMeter

    q = torch.randn(1, 64, 8)
    with torch.no_grad(), TensorMemoryMeter(exclude=(q,)) as meter:
        q @ q.transpose(-2, -1)
    assert meter.peak == 64 * 64 * 4
    page = (ROOT / "book" / "ch13_efficient_inference.md").read_text()
    assert "from autograder.tools import TensorMemoryMeter" in page and "autograder.exercises" not in page


def test_the_catalogue_of_chapter_13_does_not_copy_chapter_4s_solution_line():
    solution = "q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])"
    assert solution in notebook_text("ch04_scaled_dot_product")
    assert solution not in (ROOT / "autograder" / "exercises" / "ch13_efficient_inference.py").read_text()


# ------------------------------------------------------------------------- ch14: patches
def test_a_right_patch_embedding_on_a_wrong_patchify_blames_patchify():
    def column_major(images, patch_size):  # a student's patchify that walks down the columns first
        patches = ch14.patchify(images.transpose(-1, -2), patch_size)
        return patches.unflatten(-1, (images.shape[1], patch_size, patch_size)).transpose(-1, -2).flatten(-3)

    class Student(ch14.PatchEmbedding):
        forward = rebound(ch14.PatchEmbedding.forward, patchify=column_major)

    for layer in (check, check_hidden):
        message = failure_of("PatchEmbedding", Student, layer)
        assert "the patches reach `proj` in column-major order" in message
        assert "your `patchify`, that is the likely cause" in message
