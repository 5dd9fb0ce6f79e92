"""The components lent to later chapters keep their chapter's contract and are exempt from the forbidden-call watch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder.components import MultiHeadAttention
from autograder.forbidden import watch


def _copy_into_builtin(ours: MultiHeadAttention, bias: bool) -> nn.MultiheadAttention:
    builtin = nn.MultiheadAttention(ours.d_model, ours.n_heads, bias=bias, batch_first=True).double()
    with torch.no_grad():
        builtin.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        builtin.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            builtin.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            builtin.out_proj.bias.copy_(ours.out_proj.bias)
    return builtin


@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_attention_equals_the_builtin(bias):
    torch.manual_seed(0)
    ours = MultiHeadAttention(8, 2, bias=bias).double()
    builtin = _copy_into_builtin(ours, bias)
    q, k, v = torch.randn(3, 4, 8).double(), torch.randn(3, 6, 8).double(), torch.randn(3, 6, 8).double()
    mask = torch.rand(3, 1, 4, 6) < 0.7
    mask[..., 0] = True
    out, weights = ours(q, k, v, mask)
    expected_out, expected_weights = builtin(
        q, k, v, attn_mask=~mask.expand(3, 2, 4, 6).reshape(6, 4, 6), average_attn_weights=False
    )
    assert weights.shape == (3, 2, 4, 6)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(weights, expected_weights)


def test_components_do_not_count_as_forbidden_calls():
    ours = MultiHeadAttention(4, 2)
    x = torch.randn(1, 3, 4)
    with watch((F.multi_head_attention_forward, nn.MultiheadAttention)) as used:
        ours(x, x, x)
    assert used == []
    with watch((F.multi_head_attention_forward,)) as used:
        F.multi_head_attention_forward  # noqa: B018 (a reference is not a call)
        ours.train()
        nn.functional.multi_head_attention_forward(
            x.transpose(0, 1),
            x.transpose(0, 1),
            x.transpose(0, 1),
            4,
            2,
            None,
            None,
            None,
            None,
            False,
            0.0,
            ours.out_proj.weight,
            ours.out_proj.bias,
            use_separate_proj_weight=True,
            q_proj_weight=ours.q_proj.weight,
            k_proj_weight=ours.k_proj.weight,
            v_proj_weight=ours.v_proj.weight,
        )
    assert used, "a direct call by the student must still be seen"


def test_the_lent_multi_head_attention_passes_chapter_6s_checks(capsys, monkeypatch):
    """The component lent to later chapters keeps chapter 6's contract, checked by chapter 6's own checks
    (which otherwise forbid answering chapter 6 with the component itself)."""
    from autograder import check, check_hidden
    from autograder.exercises import get

    exercise = get("MultiHeadAttention")
    monkeypatch.setattr(exercise, "forbidden", tuple(f for f in exercise.forbidden if f is not MultiHeadAttention))
    check("MultiHeadAttention", MultiHeadAttention, device="cpu")
    check_hidden("MultiHeadAttention", MultiHeadAttention, device="cpu")
    assert "MultiHeadAttention: hidden checks passed" in capsys.readouterr().out
