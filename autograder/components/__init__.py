"""Ready-made components that later chapters lend to students.

Each keeps the interface of its chapter's exercise (SYLLABUS.md) but is built on the
PyTorch built-ins, so a student who skipped that chapter is not handed its from-scratch
solution, and a mistake in an earlier chapter does not fail every later check. Their use
of built-ins runs inside ``forbidden.exempt()`` and is not held against the student.
"""

from .attention import MultiHeadAttention, ScaledDotProductAttention
from .layers import DecoderLayer, Encoder, EncoderLayer, PositionwiseFeedForward
from .transformer import Transformer

__all__ = [
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "MultiHeadAttention",
    "PositionwiseFeedForward",
    "ScaledDotProductAttention",
    "Transformer",
]
