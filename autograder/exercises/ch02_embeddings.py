"""Chapter 2: from words to ids to vectors, and how close two vectors are.

The catalogue of wrong versions is written on top of the reference (passed in as
``ref``), so it names mistakes without spelling out a solution.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .. import forbidden as capability
from ..compare import describe
from ..cases import gradients_flow, output_judge, randn, shapes
from ..spec import Case, Exercise

ASSIGNMENT = "ch02_embeddings"
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
WORDS = ("the", "a", "cat", "dog", "sat", "on", "mat", "log", "and", "ran", "to", "park", "big", "red", "bird", "sang")
SPACES = (" ", " ", " ", "  ", "\t", "\n", "   ")


def _pick(g: torch.Generator, options) -> object:
    return options[int(torch.randint(len(options), (1,), generator=g))]


def _random_text(g: torch.Generator, n_words: int, words=WORDS) -> str:
    """Words from ``words`` with random capitals and random runs of whitespace (tabs, newlines) between them."""
    text = _pick(g, ("", " ", "\t "))
    for _ in range(n_words):
        word = _pick(g, words)
        style = int(torch.randint(4, (1,), generator=g))
        word = word.capitalize() if style == 1 else word.upper() if style == 2 else word
        text += word + _pick(g, SPACES)
    return text


def _vocab_of(words) -> dict:
    return {token: i for i, token in enumerate(list(SPECIALS) + list(words))}


# --------------------------------------------------------------------------- build_vocab
build_vocab = Exercise("build_vocab", ASSIGNMENT, dtypes=(None,),
                       points=(2, 2), difficulty=2, minutes=20,
                       task="a `dict` token → id: the four special tokens, then the words seen at least `min_freq` times, most frequent first, ties alphabetical")

_CORPUS = ["The cat sat on the mat", "the dog sat on the log", "A cat and a dog"]


def _vocab_case(corpus, min_freq=None, label=None):
    label = label or f"corpus={corpus!r}" + ("" if min_freq is None else f", min_freq={min_freq}")
    return Case(label, (corpus,), {} if min_freq is None else {"min_freq": min_freq})


@build_vocab.cases
def _(g, hidden):
    if not hidden:
        return [
            _vocab_case(_CORPUS),
            _vocab_case(_CORPUS, 2),
            _vocab_case(["  the   quick brown\tfox ", "", "the lazy dog\nsleeps", "The QUICK fox saw an <UNK>"]),
            _vocab_case([]),
            _vocab_case(["a b a", "b c"], 5),
        ]
    corpus = [_random_text(g, int(torch.randint(3, 12, (1,), generator=g))) for _ in range(8)]
    other = [_random_text(g, int(torch.randint(5, 15, (1,), generator=g))) for _ in range(5)]
    return [
        _vocab_case(corpus, label="a corpus of 8 lines with capitals, tabs and repeated spaces"),
        _vocab_case(corpus, 2, label="the same corpus, min_freq=2"),
        _vocab_case(other, 3, label="a corpus of 5 lines, min_freq=3"),
        _vocab_case([], label="an empty corpus (corpus=[])"),
        _vocab_case(["", "   ", "\t\n"], label="a corpus of empty and blank lines"),
        _vocab_case(other, 1000, label="min_freq=1000, larger than every count"),
        _vocab_case(["<pad> <UNK> word", "word <eos>"], label="a corpus that contains the special tokens as words"),
    ]


@build_vocab.prop("ids are 0, 1, ..., len(vocab) - 1, with the four special tokens first")
def _(g):
    corpus = [_random_text(g, 9) for _ in range(4)]

    def judge(results, dtype):
        vocab = results[0].output
        if not isinstance(vocab, dict):
            return f"build_vocab should return a dict from token to id, but it returned {describe(vocab)}."
        if sorted(vocab.values()) != list(range(len(vocab))):
            return "The ids of the vocabulary should be exactly 0, 1, ..., len(vocab) - 1, each used once."
        if [vocab.get(token) for token in SPECIALS] != [0, 1, 2, 3]:
            return "The special tokens should have the first ids: <pad> 0, <unk> 1, <bos> 2, <eos> 3."
        return None
    return [Case("a corpus of 4 random lines", (corpus,))], judge


def _counts(ref, corpus, vocab) -> torch.Tensor:
    """How often each id of ``vocab`` occurs in ``corpus`` (with the reference's tokenisation)."""
    return torch.bincount(ref.encode(" ".join(corpus), vocab), minlength=len(vocab))


def _reordered(vocab: dict, order) -> dict:
    """The same words, with the specials first and the other words renumbered in the given order."""
    words = sorted((w for w in vocab if w not in SPECIALS), key=order)
    return _vocab_of(words)


def _escape_capitals(text: str) -> str:
    """'The' -> '^the': a lower-case spelling that keeps the capitals apart and sorts like the original."""
    return "".join("^" + c.lower() if c.isupper() else c for c in text)


@build_vocab.mistake("the words are not lower-cased, so 'The' and 'the' are counted as two different words.")
def no_lowercase(ref):
    def wrong(corpus, min_freq=1):
        vocab = ref.build_vocab([_escape_capitals(line) for line in corpus], min_freq)
        return {re.sub(r"\^(.)", lambda m: m.group(1).upper(), w): i for w, i in vocab.items()}
    return wrong


@build_vocab.mistake("`min_freq` is ignored: words that occur fewer than min_freq times must be left out.")
def ignores_min_freq(ref):
    return lambda corpus, min_freq=1: ref.build_vocab(corpus)


@build_vocab.mistake("words that occur exactly min_freq times are left out: keep every word whose count is >= min_freq.")
def strict_min_freq(ref):
    return lambda corpus, min_freq=1: ref.build_vocab(corpus, min_freq + 1)


@build_vocab.mistake("the special tokens are missing: ids 0 to 3 belong to <pad>, <unk>, <bos> and <eos>, "
                     "and the words start at id 4.")
def no_specials(ref):
    def wrong(corpus, min_freq=1):
        vocab = ref.build_vocab(corpus, min_freq)
        return {w: i - len(SPECIALS) for w, i in vocab.items() if w not in SPECIALS}
    return wrong


@build_vocab.mistake("words with equal counts are in order of first appearance: break ties alphabetically.")
def ties_by_appearance(ref):
    def wrong(corpus, min_freq=1):
        vocab = ref.build_vocab(corpus, min_freq)
        ids = ref.encode(" ".join(corpus), vocab).tolist()
        counts, first = _counts(ref, corpus, vocab), {}
        for position, i in enumerate(ids):
            first.setdefault(i, position)
        return _reordered(vocab, lambda w: (-int(counts[vocab[w]]), first[vocab[w]]))
    return wrong


@build_vocab.mistake("the words are sorted by increasing count: the most frequent word should get id 4.")
def ascending_counts(ref):
    def wrong(corpus, min_freq=1):
        vocab = ref.build_vocab(corpus, min_freq)
        counts = _counts(ref, corpus, vocab)
        return _reordered(vocab, lambda w: (int(counts[vocab[w]]), w))
    return wrong


@build_vocab.mistake("the words are sorted alphabetically only: sort by decreasing count first, "
                     "and use the alphabet only to break ties.")
def alphabetical_only(ref):
    def wrong(corpus, min_freq=1):
        return _reordered(ref.build_vocab(corpus, min_freq), lambda w: w)
    return wrong


# -------------------------------------------------------------------------------- encode
encode = Exercise("encode", ASSIGNMENT, dtypes=(None,),
                  points=(1, 2), difficulty=1, minutes=10,
                  task="the ids of the tokens of `text` as a `LongTensor (n,)`; unknown tokens get the id of `<unk>`")

_VOCAB = _vocab_of(["the", "cat", "sat", "on", "mat", "dog"])


def _encode_case(text, vocab=_VOCAB, label=None):
    return Case(label or f"text={text!r} and the vocabulary of the example", (text, vocab))


@encode.cases
def _(g, hidden):
    if not hidden:
        return [
            _encode_case("The cat sat on the mat"),
            _encode_case("the dog sat on a log"),
            _encode_case("  the   cat\tsat \n"),
            _encode_case(""),
            _encode_case("DOG bites Cat"),
        ]
    order = torch.randperm(len(WORDS), generator=g).tolist()
    vocab = _vocab_of([WORDS[i] for i in order[:10]])
    return [
        _encode_case(_random_text(g, 20), vocab, "a text of 20 words with capitals, tabs, repeated spaces and unknown words"),
        _encode_case(_random_text(g, 1), vocab, "a single word"),
        _encode_case("", vocab, "an empty text"),
        _encode_case(" \t\n  ", vocab, "a text of whitespace only"),
        _encode_case(_random_text(g, 6, [WORDS[i] for i in order[10:]]), vocab, "a text of unknown words only"),
        _encode_case(_random_text(g, 12), _vocab_of(WORDS), "a text of 12 words, all in the vocabulary"),
    ]


@encode.prop("one id per word, as a LongTensor, and a word not in the vocabulary gets the id of <unk>")
def _(g):
    text = "the zebra sat"

    def judge(results, dtype):
        ids = results[0].output
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64 or tuple(ids.shape) != (3,):
            return (f"encode({text!r}, vocab) should return a LongTensor (int64) of shape (3,), one id per word, "
                    f"but it returned {describe(ids)}.")
        if int(ids[1]) != _VOCAB["<unk>"]:
            return f"'zebra' is not in the vocabulary, so it should get the id of <unk> ({_VOCAB['<unk>']}), not {int(ids[1])}."
        return None
    return [_encode_case(text)], judge


UNKNOWN = "\x00"  # not whitespace and never in a vocabulary: the reference maps it to <unk>


@encode.mistake("words that are not in the vocabulary are dropped: each one should become the id of <unk>.")
def drops_unknown(ref):
    def wrong(text, vocab):
        ids = ref.encode(text, vocab)
        return ids[ids != vocab["<unk>"]]
    return wrong


@encode.mistake("the text is not lower-cased, so 'The' is treated as an unknown word.")
def no_lowercase(ref):
    def wrong(text, vocab):
        words = [w if w == w.lower() else UNKNOWN for w in text.split()]
        return ref.encode(" ".join(words), vocab)
    return wrong


@encode.mistake("<bos> and <eos> are added: encode returns only the ids of the words.")
def adds_bos_eos(ref):
    def wrong(text, vocab):
        ids = ref.encode(text, vocab)
        return torch.cat([ids.new_tensor([vocab["<bos>"]]), ids, ids.new_tensor([vocab["<eos>"]])])
    return wrong


@encode.mistake("unknown words get the id of <pad> (0) instead of the id of <unk> (1).")
def unknown_as_pad(ref):
    def wrong(text, vocab):
        ids = ref.encode(text, vocab)
        return ids.masked_fill(ids == vocab["<unk>"], vocab["<pad>"])
    return wrong


@encode.mistake("the text is split with split(' '), which keeps empty strings between repeated spaces and does not "
                "split at tabs or newlines. Use split() with no argument.")
def splits_on_single_spaces(ref):
    def wrong(text, vocab):
        pieces = [p if p and p.strip() == p else UNKNOWN for p in text.split(" ")]
        return ref.encode(" ".join(pieces), vocab)
    return wrong


# ------------------------------------------------------------------------------- one_hot
one_hot = Exercise("one_hot", ASSIGNMENT, dtypes=(None,), forbidden=(capability.ONE_HOT,),
                   why_forbidden="the point is to build the one-hot vectors yourself",
                   dtype_hint="The ids are integers, but the one-hot vectors are float32, ready to be multiplied "
                              "by a weight matrix: make them with dtype=torch.float32.",
                   points=(1, 1), difficulty=1, minutes=10,
                   task="`ids (...)` → float32 `(..., vocab_size)`, a single 1 per vector")


def _ids(g, vocab_size, *shape):
    return torch.randint(vocab_size, shape, generator=g)


def _one_hot_case(ids, vocab_size, note=""):
    return Case(shapes(ids=ids, vocab_size=vocab_size) + note, (ids, vocab_size))


@one_hot.cases
def _(g, hidden):
    if not hidden:
        return [_one_hot_case(torch.tensor([2, 0, 3, 3, 1]), 7), _one_hot_case(_ids(g, 4, 2, 3), 4),
                _one_hot_case(torch.tensor([5, 0, 5]), 6),
                _one_hot_case(torch.tensor(2), 5, " (a single id, a 0-dimensional tensor)")]
    return [_one_hot_case(_ids(g, 10, 3, 2, 4), 10), _one_hot_case(torch.tensor([0]), 1, " (a vocabulary of one token)"),
            _one_hot_case(torch.zeros(0, dtype=torch.long), 5, " (no ids)"),
            _one_hot_case(_ids(g, 9, 5, 3).T, 9, " (non-contiguous ids)"),
            _one_hot_case(torch.tensor(4), 6, " (a single id, a 0-dimensional tensor)"),
            _one_hot_case(_ids(g, 50, 20), 50)]


@one_hot.prop("each row holds a single 1, at the column of its id")
def _(g):
    ids = _ids(g, 8, 2, 5)

    @output_judge((2, 5, 8), "one_hot(ids, 8) with ids of shape (2, 5)")
    def judge(out, dtype):
        out = out.detach().cpu()
        if not ((out == 0) | (out == 1)).all() or not (out.sum(-1) == 1).all():
            return "Each one-hot vector should hold exactly one 1 and zeros everywhere else."
        if not torch.equal(out.argmax(-1), ids):
            return "The 1 of the one-hot vector of id i should be in column i."
        return None
    return [_one_hot_case(ids, 8)], judge


@one_hot.mistake("the width of the vectors comes from the largest id in `ids` instead of from `vocab_size`.")
def width_from_ids(ref):
    return lambda ids, vocab_size: ref.one_hot(ids, int(ids.max()) + 1 if ids.numel() else 0)


@one_hot.mistake("the ids are flattened: the result should keep the shape of `ids` and add one axis, (..., vocab_size).")
def flattened(ref):
    return lambda ids, vocab_size: ref.one_hot(ids.reshape(-1), vocab_size)


@one_hot.mistake("the vocabulary axis comes first: the result should have shape (..., vocab_size), one row per id.")
def vocab_axis_first(ref):
    return lambda ids, vocab_size: ref.one_hot(ids, vocab_size).movedim(-1, 0)


@one_hot.mistake("the result is an integer tensor: one-hot vectors here are float32.", expect="should have dtype float32")
def integer_result(ref):
    return lambda ids, vocab_size: ref.one_hot(ids, vocab_size).long()


@one_hot.mistake("calls F.one_hot", expect="uses torch.nn.functional.one_hot")
def builtin(ref):
    return lambda ids, vocab_size: F.one_hot(ids, vocab_size).float()


# ---------------------------------------------------------------------- embedding_lookup
embedding_lookup = Exercise("embedding_lookup", ASSIGNMENT, forbidden=(capability.EMBEDDING,),
                            why_forbidden="the point is to see that an embedding layer is a row lookup",
                            points=(1, 2), difficulty=1, minutes=10,
                            task="`ids (...)`, `weight (V, d)` → `(..., d)`: rows of `weight`, with gradients flowing to `weight`")


def _lookup_case(ids, weight, note=""):
    return Case(shapes(ids=ids, weight=weight) + note, (ids, weight))


@embedding_lookup.cases
def _(g, hidden):
    if not hidden:
        # Non-square weights, so that rows and columns cannot be confused unnoticed; ids below both sizes, so
        # that picking columns runs and can be named.
        return [_lookup_case(torch.tensor([3, 0, 4, 1]), randn(g, 6, 5)),
                _lookup_case(_ids(g, 6, 2, 3), randn(g, 6, 4)),
                _lookup_case(torch.tensor([2, 2, 0]), randn(g, 4, 2), " (a repeated id)")]
    return [_lookup_case(_ids(g, 8, 2, 3, 4), randn(g, 8, 8)),
            _lookup_case(_ids(g, 10, 5, 2), randn(g, 10, 3)),
            _lookup_case(torch.tensor(3), randn(g, 5, 3), " (a single id, a 0-dimensional tensor)"),
            _lookup_case(torch.zeros(0, dtype=torch.long), randn(g, 4, 6), " (no ids)"),
            _lookup_case(_ids(g, 7, 5), randn(g, 3, 7).T, " (non-contiguous weight)"),
            _lookup_case(_ids(g, 6, 4, 3).T, randn(g, 6, 2), " (non-contiguous ids)"),
            _lookup_case(torch.zeros(4, dtype=torch.long), randn(g, 1, 5), " (a vocabulary of one token)")]


embedding_lookup.prop("gradients flow back to weight",
                      lambda g: gradients_flow(_lookup_case(torch.tensor([1, 3, 1]), randn(g, 4, 3)),
                                               {"args.1": "weight"}))


@embedding_lookup.mistake("columns of `weight` are picked instead of rows: the vector of id i is row i, weight[i].")
def columns(ref):
    return lambda ids, weight: ref.embedding_lookup(ids, weight.T)


@embedding_lookup.mistake("the ids index the columns (weight[:, ids]): the vector of id i is row i, weight[i], "
                          "so the result has shape (..., d).")
def indexes_columns(ref):
    return lambda ids, weight: ref.embedding_lookup(ids, weight.T).movedim(-1, 0)


@embedding_lookup.mistake("the ids are flattened: the result should keep the shape of `ids` and add one axis, (..., d).")
def flattened(ref):
    return lambda ids, weight: ref.embedding_lookup(ids.reshape(-1), weight)


@embedding_lookup.mistake("the ids are used as if they started at 1: id 0 is the first row of `weight`.")
def one_based(ref):
    return lambda ids, weight: ref.embedding_lookup(ids - 1, weight)


@embedding_lookup.mistake("`weight` is detached (or copied out of torch), so no gradient reaches it.", expect="No finite gradient reaches `weight`")
def detached(ref):
    return lambda ids, weight: ref.embedding_lookup(ids, weight.detach())


@embedding_lookup.mistake("calls F.embedding", expect="uses torch.nn.functional.embedding")
def builtin(ref):
    return lambda ids, weight: F.embedding(ids, weight)


# -------------------------------------------------------------- cosine_similarity_matrix
cosine_similarity_matrix = Exercise("cosine_similarity_matrix", ASSIGNMENT, forbidden=(capability.COSINE_SIMILARITY,),
                                    why_forbidden="the point is to compute the lengths and divide by them yourself",
                                    points=(1, 2), difficulty=2, minutes=15,
                                    task="`E (n, d)` → `(n, n)` cosine similarities; a zero row gives 0, not NaN")


def _scaled_rows(g, n, d, low=-2.0, high=2.0):
    """Rows of very different lengths (10**low to 10**high), so that length matters for a dot product."""
    return randn(g, n, d) * 10 ** (torch.rand(n, 1, generator=g, dtype=torch.float64) * (high - low) + low)


def _with_zero_row(E, row):
    E = E.clone()
    E[row] = 0
    return E


def _cos_case(E, note=""):
    return Case(shapes(E=E) + note, (E,))


@cosine_similarity_matrix.cases
def _(g, hidden):
    if not hidden:
        return [_cos_case(randn(g, 4, 3)), _cos_case(_scaled_rows(g, 5, 2, -1, 1), " (rows of very different lengths)"),
                _cos_case(randn(g, 3, 6)), _cos_case(_with_zero_row(randn(g, 4, 3), 2), " (row 2 is all zeros)")]
    return [_cos_case(randn(g, 8, 16)), _cos_case(randn(g, 1, 4), " (a single row)"), _cos_case(randn(g, 6, 1)),
            _cos_case(randn(g, 5, 7).T, " (non-contiguous E)"), _cos_case(_scaled_rows(g, 6, 3), " (rows of very different lengths)"),
            _cos_case(_with_zero_row(randn(g, 5, 4), 0), " (a row of zeros)")]


@cosine_similarity_matrix.prop("the matrix is symmetric, with ones on the diagonal and every entry in [-1, 1]")
def _(g):
    E = _scaled_rows(g, 6, 4)

    @output_judge((6, 6), "cosine_similarity_matrix(E) with E of shape (6, 4)")
    def judge(S, dtype):
        S = S.detach().cpu().double()
        if not torch.allclose(S, S.T, atol=1e-5):
            return "The similarity matrix should be symmetric: cos(a, b) = cos(b, a). Normalise both sides of the product."
        if not torch.allclose(S.diagonal(), torch.ones(6, dtype=S.dtype), atol=1e-5):
            return "Every row should have similarity 1 with itself: divide each row by its length (its norm)."
        if S.abs().max() > 1 + 1e-5:
            return f"Cosine similarities lie in [-1, 1], but yours reach {S.abs().max().item():.4g}."
        return None
    return [_cos_case(E, " (rows of very different lengths)")], judge


cosine_similarity_matrix.prop("gradients flow back to E",
                              lambda g: gradients_flow(_cos_case(randn(g, 3, 4)), {"args.0": "E"}))


@cosine_similarity_matrix.mistake("these are dot products: divide each row by its length first, so that only the "
                                  "directions are compared.")
def dot_products(ref):
    return lambda E: E @ E.T


@cosine_similarity_matrix.mistake("the columns are normalised instead of the rows: take the norm of each row (dim=-1).")
def normalises_columns(ref):
    def wrong(E):
        unit = E / E.norm(dim=0, keepdim=True)
        return unit @ unit.T
    return wrong


@cosine_similarity_matrix.mistake("only one side of the product is normalised: both rows must be divided by their lengths.")
def one_side_normalised(ref):
    return lambda E: ref.cosine_similarity_matrix(E) * E.norm(dim=-1)[None, :]


@cosine_similarity_matrix.mistake("the dot products are divided by the squared lengths: divide by the lengths "
                                  "(norms) themselves.")
def squared_norms(ref):
    def wrong(E):
        norms = E.norm(dim=-1)
        return ref.cosine_similarity_matrix(E) / (norms[:, None] * norms[None, :])
    return wrong


@cosine_similarity_matrix.mistake("this is the cosine distance 1 - cos, not the cosine similarity.")
def distance(ref):
    return lambda E: 1 - ref.cosine_similarity_matrix(E)


@cosine_similarity_matrix.mistake("a row of zeros gives NaN (0 / 0): divide by max(norm, 1e-8) so that a zero row "
                                  "has similarity 0 with every row.")
def zero_row_nan(ref):
    def wrong(E):
        S = ref.cosine_similarity_matrix(E)
        zero = E.norm(dim=-1) == 0
        return S.masked_fill(zero[:, None] | zero[None, :], float("nan"))
    return wrong


@cosine_similarity_matrix.mistake("calls F.cosine_similarity", expect="uses torch.cosine_similarity")
def builtin(ref):
    return lambda E: F.cosine_similarity(E[:, None, :], E[None, :, :], dim=-1)


# ------------------------------------------------------------------- nearest_neighbors
nearest_neighbors = Exercise("nearest_neighbors", ASSIGNMENT,
                             points=(1, 2), difficulty=2, minutes=15,
                             task="the `k` rows most cosine-similar to row `idx`, leaving out `idx`, most similar first: a `LongTensor (k,)`")


def _orders(E, idx, k):
    """The k rows nearest to row idx by cosine similarity, by dot product and by Euclidean distance."""
    others = torch.arange(E.shape[0]) != idx
    def best(scores):
        return scores.masked_fill(~others, float("-inf")).topk(k).indices.tolist()
    return (best(F.cosine_similarity(E, E[idx][None], dim=-1)), best(E @ E[idx]), best(-(E - E[idx]).norm(dim=-1)))


def _neighbour_case(g, n, d, idx, k, note="", non_contiguous=False):
    """Rows of very different lengths; redrawn until no two rows are almost equally similar to row idx,
    so that float32 and float64 agree on the order, and (with more than two rows) until ranking by dot
    product or by distance gives another answer than ranking by cosine, either way round, so that each
    of these mistakes is told apart from the others."""
    while True:
        E = _scaled_rows(g, n, d, -1, 1)
        E = E.T.contiguous().T if non_contiguous else E
        sims = F.cosine_similarity(E, E[idx][None], dim=-1).sort().values
        cosine, dot, distance = _orders(E, idx, k)
        apart = n <= 2 or all(other not in (cosine, cosine[::-1]) for other in (dot, distance))
        if (sims[1:] - sims[:-1]).min() > 1e-3 and apart:
            return Case(shapes(E=E, idx=idx, k=k) + note, (E, idx, k))


@nearest_neighbors.cases
def _(g, hidden):
    if not hidden:
        return [_neighbour_case(g, 7, 3, 2, 3), _neighbour_case(g, 5, 4, 0, 4, " (every other row)"),
                _neighbour_case(g, 8, 2, 7, 2)]
    return [_neighbour_case(g, 20, 8, 11, 5), _neighbour_case(g, 9, 3, 8, 8, " (every other row, idx last)"),
            _neighbour_case(g, 6, 5, 0, 1), _neighbour_case(g, 2, 3, 1, 1, " (two rows)"),
            _neighbour_case(g, 10, 4, 5, 3, " (non-contiguous E)", non_contiguous=True)]


@nearest_neighbors.prop("k different rows, never idx itself, from most to least similar")
def _(g):
    case = _neighbour_case(g, 9, 3, 4, 5)
    E, idx, k = case.args

    def judge(results, dtype):
        got = results[0].output
        if not isinstance(got, torch.Tensor) or got.dtype != torch.int64 or tuple(got.shape) != (k,):
            return f"nearest_neighbors on {case.label} should return a LongTensor of shape ({k},), got {describe(got)}."
        got = got.cpu()
        if idx in got.tolist():
            return f"The neighbours of row {idx} should not include row {idx} itself."
        if len(set(got.tolist())) != k:
            return "Each neighbour should appear only once."
        sims = F.cosine_similarity(E[got], E[idx][None], dim=-1)
        if not (sims[:-1] >= sims[1:]).all():
            return "The neighbours should come from the most similar to the least similar."
        return None
    return [case], judge


@nearest_neighbors.mistake("row idx itself is counted as its own nearest neighbour: leave it out (give it a "
                           "similarity of -inf before picking the k best).")
def includes_itself(ref):
    def wrong(E, idx, k):
        others = ref.nearest_neighbors(E, idx, k)
        return torch.cat([others.new_tensor([idx]), others[:-1]])
    return wrong


@nearest_neighbors.mistake("these are the right rows in the wrong order: list them from the most similar to the "
                           "least similar (descending similarity).")
def ascending_order(ref):
    return lambda E, idx, k: ref.nearest_neighbors(E, idx, k).flip(0)


@nearest_neighbors.mistake("these are the least similar rows: sort from the most similar to the least similar.")
def least_similar(ref):
    return lambda E, idx, k: ref.nearest_neighbors(E, idx, E.shape[0] - 1).flip(0)[:k]


@nearest_neighbors.mistake("the rows are ranked by dot product, which favours long vectors: rank them by cosine "
                           "similarity.")
def by_dot_product(ref):
    def wrong(E, idx, k):
        scores = (E @ E[idx]).index_fill(0, torch.tensor([idx], device=E.device), float("-inf"))
        return scores.topk(k).indices
    return wrong


@nearest_neighbors.mistake("the rows are ranked by Euclidean distance, which depends on the vectors' lengths: rank "
                           "them by cosine similarity.")
def by_distance(ref):
    def wrong(E, idx, k):
        distances = (E - E[idx]).norm(dim=-1).index_fill(0, torch.tensor([idx], device=E.device), float("inf"))
        return distances.topk(k, largest=False).indices
    return wrong


@nearest_neighbors.mistake("the indices after idx are off by one: removing row idx shifts the rows after it. Keep "
                           "every row and give row idx a similarity of -inf instead.")
def shifted_after_removal(ref):
    def wrong(E, idx, k):
        found = ref.nearest_neighbors(E, idx, k)
        return found - (found > idx).long()
    return wrong


@nearest_neighbors.mistake("the similarity values are returned instead of the row indices.", expect="should have dtype int64")
def returns_similarities(ref):
    def wrong(E, idx, k):
        found = ref.nearest_neighbors(E, idx, k)
        return F.cosine_similarity(E[found], E[idx][None], dim=-1)
    return wrong
