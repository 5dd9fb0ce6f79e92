"""Chapter 11: from logits to tokens. Greedy decoding, sampling with temperature, top-k and
top-p filtering, beam search with a length penalty.

A decoding function takes a *step function* (a language model: prefix -> next-token logits)
and a sampling function takes a ``torch.Generator``. Neither is plain data, and a case must be
plain data (it is stored as a fixture), so a case stores what they are made from (a table of
logits, a seed) and the ``Bound`` calling strategy turns that into the real argument at call time, for the
student's code, the reference and every catalogued mistake alike.

The catalogue of wrong versions is written on top of the reference (passed in as ``ref``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..calling import Bound
from ..compare import describe
from ..errors import CheckFailure
from ..cases import add_mistake, changed_output, randn, transposed
from ..spec import Case, Exercise

ASSIGNMENT = "ch11_decoding"
NEG_INF = float("-inf")


# ---------------------------------------------------------------------- step functions
class StepFunction:
    """A tiny language model given as a table: ``table[t - 1, last]`` holds the logits of the
    next token after a prefix of ``t`` tokens that ends with ``last``.

    It checks what it is given, so that a wrong call is named in one sentence: the prefix is
    the whole sequence so far (a 1-D integer tensor that starts with bos), and no call is
    needed once the sequence is complete: when it holds ``max_len`` tokens, or once it holds eos.
    """

    def __init__(self, table: torch.Tensor, bos_id: int, eos_id: int, max_len: int):
        self.table, self.bos_id, self.eos_id, self.max_len = table, bos_id, eos_id, max_len

    def __call__(self, prefix) -> torch.Tensor:
        if not isinstance(prefix, torch.Tensor) or prefix.is_floating_point() or prefix.is_complex() \
                or prefix.dtype == torch.bool:
            raise CheckFailure(f"step_fn takes the prefix as a 1-D LongTensor of token ids, but it was given "
                               f"{describe(prefix)}. Build it with torch.tensor(tokens).")
        if prefix.dim() != 1 or prefix.numel() == 0:
            raise CheckFailure(f"step_fn takes the prefix as a non-empty 1-D tensor of shape (t,), but it was "
                               f"given shape {tuple(prefix.shape)}.")
        tokens = prefix.tolist()
        if tokens[0] != self.bos_id:
            raise CheckFailure(f"The prefix given to step_fn should start with bos_id={self.bos_id}, but it starts "
                               f"with {tokens[0]}: pass the whole sequence so far, not only the last token.")
        if len(tokens) >= self.max_len:
            raise CheckFailure(f"step_fn was called with a prefix of {len(tokens)} tokens although max_len is "
                               f"{self.max_len}: stop when the sequence holds max_len tokens (bos included).")
        if self.eos_id in tokens[1:]:
            raise CheckFailure(f"step_fn was called with the prefix {tokens}, which already holds eos_id={self.eos_id}: "
                               "decoding goes on after eos, but a sequence is complete once it ends with eos. Stop "
                               "there (in beam search, set that hypothesis aside as finished and never extend it).")
        last = tokens[-1]
        if not 0 <= last < self.table.shape[-1]:
            raise CheckFailure(f"The prefix given to step_fn holds the token id {last}, outside the vocabulary "
                               f"0..{self.table.shape[-1] - 1}.")
        return self.table[len(tokens) - 1, last].clone()


def _table(g: torch.Generator, max_len: int, vocab: int, scale: float = 2.0, eos_id: int | None = None,
           eos_boost: float = 0.0, banned: tuple = ()) -> torch.Tensor:
    """A random step-function table (max_len - 1, V, V): logits for every (position, last token)."""
    table = randn(g, max(max_len - 1, 1), vocab, vocab, scale=scale)
    if eos_id is not None:
        table[..., eos_id] += eos_boost
    for token in banned:
        table[..., token] = NEG_INF
    return table


def _designed(max_len: int, vocab: int, rows: dict, floor: float = 1e-4) -> torch.Tensor:
    """A table from ``{(position, last): {token: probability}}``; other tokens share ``floor``.

    Rows not given are uniform. Logits are log-probabilities, so the numbers read as probabilities.
    """
    table = torch.zeros(max(max_len - 1, 1), vocab, vocab, dtype=torch.float64)
    for (position, last), probs in rows.items():
        row = torch.full((vocab,), floor, dtype=torch.float64)
        for token, p in probs.items():
            row[token] = p
        table[position, last] = (row / row.sum()).log()
    return table


def _bind_greedy(impl, device, table, bos_id, eos_id, max_len):
    return impl(StepFunction(table, bos_id, eos_id, max_len), bos_id, eos_id, max_len)


def _bind_beam(impl, device, table, bos_id, eos_id, beam_size, max_len, **kwargs):
    return impl(StepFunction(table, bos_id, eos_id, max_len), bos_id, eos_id, beam_size, max_len, **kwargs)


# Token ids of the course (chapter 2): 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos>; then the words.
PAD, UNK, BOS, EOS, A, B, C = range(7)

# Three small language models whose right answers can be worked out by hand (the chapter
# page works them out). Probabilities of the next token given (position, last token).
GREEDY_AND_BEAM_DISAGREE = {(0, BOS): {A: .5, B: .4, EOS: .1}, (1, A): {A: .25, B: .35, C: .3, EOS: .1},
                            (1, B): {EOS: .9, A: .1}, (2, B): {A: .5, EOS: .45, C: .05}, (3, A): {EOS: .8, C: .2}}
EOS_EARLY = {(0, BOS): {EOS: .45, A: .3, B: .25}, (1, A): {C: .9, EOS: .1}, (1, B): {EOS: .5, A: .5},
             (2, C): {EOS: .95, A: .05}}
THREE_WINNERS = {(0, BOS): {A: .55, B: .35, EOS: .1}, (1, A): {EOS: .4, C: .35, B: .25}, (1, B): {EOS: .9, A: .1},
                 (2, C): {EOS: .99, A: .01}}  # beam_size 3: greedy, the plain sum and the length penalty differ
PENALTY_DECIDES = {(0, BOS): {A: .5, B: .45, EOS: .05}, (1, A): {EOS: .6, C: .4}, (1, B): {C: .8, EOS: .1, A: .1},
                   (2, C): {C: .8, EOS: .15, A: .05}, (3, C): {EOS: .8, C: .2}, (2, A): {EOS: .5, B: .5}}


def _relabelled(g: torch.Generator, rows: dict, vocab: int, noise: float) -> tuple[dict, int, int]:
    """The same language model with fresh token ids (bos and eos included) and slightly moved probabilities."""
    ids = torch.randperm(vocab, generator=g).tolist()
    moved = {}
    for (position, last), probs in rows.items():
        jitter = (1 + noise * (torch.rand(len(probs), generator=g, dtype=torch.float64) - 0.5)).tolist()
        moved[(position, ids[last])] = {ids[t]: p * j for (t, p), j in zip(probs.items(), jitter)}
    return moved, ids[BOS], ids[EOS]


# ----------------------------------------------------------------------- greedy_decode
greedy_decode = Exercise("greedy_decode", ASSIGNMENT, call=Bound(_bind_greedy), points=(1, 2), difficulty=2, minutes=15, task="the generation loop with argmax, bos, eos and `max_len`; returns the token ids as a list")


def _greedy_case(table, bos_id, eos_id, max_len, what):
    return Case(f"step_fn over {table.shape[-1]} tokens {what}, bos_id={bos_id}, eos_id={eos_id}, max_len={max_len}",
                (table, bos_id, eos_id, max_len))


@greedy_decode.cases
def _(g, hidden):
    if not hidden:
        tie = _designed(4, 7, {(0, BOS): {A: .4, B: .4, EOS: .2}, (1, A): {EOS: .7, C: .3}, (1, B): {C: 1.0}})
        return [
            _greedy_case(_designed(6, 7, GREEDY_AND_BEAM_DISAGREE), BOS, EOS, 6, "where the most probable first token leads astray"),
            _greedy_case(_designed(6, 7, EOS_EARLY), BOS, EOS, 6, "whose most probable first token is eos"),
            _greedy_case(_table(g, 5, 8), BOS, EOS, 5, "that never makes eos the most probable"),
            _greedy_case(tie, BOS, EOS, 4, "with a tie between tokens 4 and 5 at the first step"),
            _greedy_case(_table(g, 1, 5), BOS, EOS, 1, "(max_len=1: nothing to generate)"),
        ]
    moved, bos_id, eos_id = _relabelled(g, EOS_EARLY, 9, noise=0.2)
    cases = [_greedy_case(_designed(7, 9, moved), bos_id, eos_id, 7, "whose most probable first token is eos")]
    bos_id, eos_id = torch.randperm(11, generator=g)[:2].tolist()  # second: max_len is reached, eos impossible
    cases.append(_greedy_case(_table(g, 8, 11, banned=(bos_id, eos_id)), bos_id, eos_id, 8, "that never produces eos"))
    for vocab, max_len, boost in ((12, 9, 2.5), (30, 12, 1.5), (6, 2, 0.0), (10, 7, -8.0)):
        bos_id, eos_id = torch.randperm(vocab, generator=g)[:2].tolist()
        cases.append(_greedy_case(_table(g, max_len, vocab, eos_id=eos_id, eos_boost=boost, banned=(bos_id,)),
                                  bos_id, eos_id, max_len, "(random)"))
    cases.append(_greedy_case(_table(g, 1, 5), BOS, EOS, 1, "(max_len=1: nothing to generate)"))
    return cases


@greedy_decode.mistake("the eos token is not part of the returned list: when the model produces eos, "
                       "append it, then stop.")
def no_eos_in_output(ref):
    def wrong(step_fn, bos_id, eos_id, max_len):
        tokens = ref.greedy_decode(step_fn, bos_id, eos_id, max_len)
        return tokens[:-1] if len(tokens) > 1 and tokens[-1] == eos_id else tokens
    return wrong


@greedy_decode.mistake("decoding goes on after eos", expect="decoding goes on after eos")
def ignores_eos(ref):
    return lambda step_fn, bos_id, eos_id, max_len: ref.greedy_decode(step_fn, bos_id, -1, max_len)


@greedy_decode.mistake("bos is missing from the returned list: it starts with bos_id, then the generated tokens.")
def no_bos_in_output(ref):
    return lambda step_fn, bos_id, eos_id, max_len: ref.greedy_decode(step_fn, bos_id, eos_id, max_len)[1:]


@greedy_decode.mistake("decoding stops one token early: it should stop when the list holds max_len tokens, bos included.")
def stops_one_early(ref):
    return lambda step_fn, bos_id, eos_id, max_len: ref.greedy_decode(step_fn, bos_id, eos_id, max(max_len - 1, 1))


@greedy_decode.mistake("step_fn is given only the last token", expect="not only the last token")
def last_token_only(ref):
    return lambda step_fn, bos_id, eos_id, max_len: ref.greedy_decode(
        lambda prefix: step_fn(prefix[-1:]), bos_id, eos_id, max_len)


@greedy_decode.mistake("one token too many", expect="stop when the sequence holds max_len tokens")
def one_too_many(ref):
    return lambda step_fn, bos_id, eos_id, max_len: ref.greedy_decode(step_fn, bos_id, eos_id, max_len + 1)


@greedy_decode.mistake("max_len=1 still calls step_fn once", expect="although max_len is 1")
def ignores_max_len_one(ref):
    return lambda step_fn, bos_id, eos_id, max_len: ref.greedy_decode(step_fn, bos_id, eos_id, max(max_len, 2))


# ------------------------------------------------------------------------- beam_search
beam_search = Exercise("beam_search", ASSIGNMENT, call=Bound(_bind_beam), outputs=("tokens", "score"), points=(2, 3), difficulty=4, minutes=40, task="beam search with finished hypotheses and a length penalty; returns `(tokens, score)`")


def _beam_case(table, bos_id, eos_id, beam_size, max_len, length_penalty, what):
    kwargs = {} if length_penalty is None else {"length_penalty": length_penalty}
    penalty = "" if length_penalty is None else f", length_penalty={length_penalty}"
    return Case(f"step_fn over {table.shape[-1]} tokens {what}, bos_id={bos_id}, eos_id={eos_id}, "
                f"beam_size={beam_size}, max_len={max_len}{penalty}", (table, bos_id, eos_id, beam_size, max_len), kwargs)


@beam_search.cases
def _(g, hidden):
    if not hidden:
        # First a case where greedy decoding, ranking by the plain sum and ranking by the score each
        # return another hypothesis, so that each of these mistakes is named.
        penalty = _designed(6, 7, PENALTY_DECIDES)
        return [
            _beam_case(_designed(6, 7, THREE_WINNERS), BOS, EOS, 3, 6, 1.0,
                       "where greedy decoding, the plain sum and the length penalty each choose another winner"),
            _beam_case(penalty, BOS, EOS, 2, 6, 1.0, "where the length penalty decides the winner"),
            _beam_case(_designed(6, 7, GREEDY_AND_BEAM_DISAGREE), BOS, EOS, 2, 6, None,
                       "where greedy decoding and beam search disagree"),
            _beam_case(penalty, BOS, EOS, 2, 6, 0.0, "where the length penalty decides the winner"),
            _beam_case(_designed(6, 7, EOS_EARLY), BOS, EOS, 2, 6, 1.0, "whose most probable first token is eos"),
            _beam_case(_table(g, 4, 6, eos_id=EOS, eos_boost=-10.0), BOS, EOS, 3, 4, 1.0,
                       "that (almost) never ends: no hypothesis finishes"),
        ]
    three, bos_id, eos_id = _relabelled(g, THREE_WINNERS, 10, noise=0.02)
    cases = [_beam_case(_designed(7, 10, three), bos_id, eos_id, 3, 7, 1.0,
                        "where greedy decoding, the plain sum and the length penalty each choose another winner")]
    moved, bos_id, eos_id = _relabelled(g, PENALTY_DECIDES, 10, noise=0.1)
    cases.append(_beam_case(_designed(7, 10, moved), bos_id, eos_id, 2, 7, 0.9, "where the length penalty decides the winner"))
    for vocab, beam_size, max_len, penalty, boost in ((12, 3, 8, 1.0, 1.0), (20, 4, 10, 0.6, 0.5), (9, 5, 6, 2.0, 0.0),
                                                      (8, 1, 7, 1.0, 1.0), (6, 3, 2, 1.0, 0.0), (10, 3, 6, 0.0, 1.5)):
        bos_id, eos_id = torch.randperm(vocab, generator=g)[:2].tolist()
        table = _table(g, max_len, vocab, scale=1.5, eos_id=eos_id, eos_boost=boost, banned=(bos_id,))
        cases.append(_beam_case(table, bos_id, eos_id, beam_size, max_len, penalty, "(random)"))
    return cases


@beam_search.prop("the score is the sum of the log-probabilities of the returned tokens, divided by len ** length_penalty")
def _(g):
    table = _table(g, 6, 8, scale=1.5, eos_id=EOS, eos_boost=1.0, banned=(BOS,))
    case = _beam_case(table, BOS, EOS, 3, 6, 0.7, "(random)")

    def judge(results, dtype):
        out = results[0].output
        if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[0], (list, tuple)) or len(out[0]) < 2:
            return None  # the comparisons have already said what is wrong with the shape of the result
        tokens, score = list(out[0]), out[1]
        score = score.item() if isinstance(score, torch.Tensor) and score.numel() == 1 else score
        if not isinstance(score, (int, float)) or not all(isinstance(t, int) and 0 <= t < 8 for t in tokens):
            return None
        total = sum(torch.log_softmax(table[i, tokens[i]], -1)[tokens[i + 1]].item() for i in range(len(tokens) - 1))
        expected = total / (len(tokens) - 1) ** 0.7
        if abs(score - expected) > 1e-4 * max(1.0, abs(expected)):
            return ("The score beam_search returns is not the sum of the log-probabilities of the tokens it returns "
                    "divided by len ** length_penalty (len counts the tokens after bos). Return the score of the "
                    "hypothesis you return.")
        return None
    return [case], judge


@beam_search.mistake("the final winner is chosen by the plain sum of log-probabilities: rank the finished hypotheses "
                     "by their score, sum / len ** length_penalty, which is also the score you return.")
def winner_by_sum(ref):
    def wrong(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0):
        tokens, total = ref.beam_search(step_fn, bos_id, eos_id, beam_size, max_len, 0.0)
        return tokens, total / (len(tokens) - 1) ** length_penalty
    return wrong


@beam_search.mistake("only the single best hypothesis is kept at each step: that is greedy decoding. "
                     "Beam search keeps the beam_size best partial sequences.")
def greedy_not_beam(ref):
    return lambda step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0: ref.beam_search(
        step_fn, bos_id, eos_id, 1, max_len, length_penalty)


@beam_search.mistake("the length penalty is ignored: finished hypotheses are ranked (and scored) by their plain sum of "
                     "log-probabilities instead of sum / len ** length_penalty.")
def no_length_penalty(ref):
    return lambda step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0: ref.beam_search(
        step_fn, bos_id, eos_id, beam_size, max_len, 0.0)


@beam_search.mistake("the returned score is the plain sum of log-probabilities: divide it by len ** length_penalty, "
                     "where len counts the tokens after bos.")
def unnormalised_score(ref):
    def wrong(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0):
        tokens, score = ref.beam_search(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty)
        return tokens, score * (len(tokens) - 1) ** length_penalty
    return wrong


@beam_search.mistake("hypotheses that end with eos are extended further", expect="set that hypothesis aside as finished")
def extends_finished(ref):
    return lambda step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0: ref.beam_search(
        step_fn, bos_id, -1, beam_size, max_len, length_penalty)


@beam_search.mistake("bos is missing from the returned tokens: they start with bos_id.")
def no_bos_in_output(ref):
    def wrong(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty=1.0):
        tokens, score = ref.beam_search(step_fn, bos_id, eos_id, beam_size, max_len, length_penalty)
        return tokens[1:], score
    return wrong


# ------------------------------------------------------------------------- sample_next
def _bind_sampler(impl, device, logits, temperature, draws):
    """``draws`` = {"seed", "count", "on_cpu"}: ``count`` calls in a row, sharing one generator seeded with ``seed``.

    A fresh copy of the logits is given to each call. The global random generator is seeded too
    (and restored afterwards), so that a version that ignores ``generator`` draws reproducibly
    and can be recognised. Visible exact draws run on the CPU, whose generator made the fixtures.
    """
    if draws["on_cpu"]:
        logits = logits.cpu()
    generator = torch.Generator(device=logits.device).manual_seed(draws["seed"])
    cuda = [logits.device.index or 0] if logits.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(draws["seed"] + 1_000_003)
        return [impl(logits.clone(), temperature, generator) for _ in range(draws["count"])]


sample_next = Exercise("sample_next", ASSIGNMENT, call=Bound(_bind_sampler), dtypes=(None,), points=(1, 2), difficulty=2, minutes=10, task=r"one draw from $\operatorname{softmax}(z/T)$ with a seeded generator; returns a token id")


def _sample_case(logits, temperature, seed, count, on_cpu=False, note=""):
    dtype = str(logits.dtype).removeprefix("torch.")
    label = (f"{count} calls in a row of sample_next(logits {tuple(logits.shape)} {dtype}{note}, "
             f"temperature={temperature}, generator) with one generator seeded with {seed}")
    return Case(label, (logits, temperature, {"seed": seed, "count": count, "on_cpu": on_cpu}))


@sample_next.cases
def _(g, hidden):
    if not hidden:
        tie = torch.tensor([0.5, 1.0, 0.2, 1.0, 0.8])
        with_inf = randn(g, 6).index_fill(0, torch.tensor([2]), NEG_INF)
        return [
            _sample_case(randn(g, 5).float(), 0.4, 11, 10, on_cpu=True),
            _sample_case(with_inf, 0.5, 5, 8, on_cpu=True, note=", -inf at index 2"),
            _sample_case(randn(g, 8), 2.0, 3, 8, on_cpu=True),
            _sample_case(tie, 0.0, 0, 8, on_cpu=True, note=", a tie for the largest"),
        ]
    def seed():
        return int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    with_inf = randn(g, 9).index_fill(0, torch.randperm(9, generator=g)[:3], NEG_INF)
    # First, logits spread evenly (0 to 2, shuffled): at temperature 0.5 the right draws, the draws at
    # temperature 1, at 0.25 (multiplied) and the argmax all differ, so each mistake can be named.
    spread = (torch.linspace(0, 2, 10, dtype=torch.float64)[torch.randperm(10, generator=g)] + randn(g, 10, scale=0.1))
    return [
        _sample_case(spread.float(), 0.5, seed(), 40, note=", spread evenly"),
        _sample_case(randn(g, 12, scale=0.5), 0.0, seed(), 10),
        _sample_case(with_inf.float(), 1.0, seed(), 12, note=", some -inf"),
        _sample_case(randn(g, 50, scale=3), 1.7, seed(), 12),
        _sample_case(randn(g, 3), 5.0, seed(), 12),
        _sample_case(randn(g, 20, scale=100).float(), 0.5, seed(), 12, note=", entries near 100"),
        _sample_case(randn(g, 6).float(), 0.05, seed(), 6, note=" (a low temperature)"),
    ]


STAT_DRAWS, STAT_TOLERANCE = 1200, 0.06


@sample_next.prop(f"over {STAT_DRAWS} draws, each token comes out about as often as softmax(logits / temperature) "
                  f"says (within {STAT_TOLERANCE})")
def _(g):
    temperature = 0.7
    logits = randn(g, 5).index_fill(0, torch.randint(0, 5, (1,), generator=g), NEG_INF).float()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    cases = [_sample_case(logits, temperature, seed, STAT_DRAWS)]
    expected = [(temperature, torch.softmax(logits.double() / temperature, -1))]

    def judge(results, dtype):
        for result, (temperature, probs) in zip(results, expected):
            draws = result.output
            if not isinstance(draws, list) or not all(isinstance(d, int) and 0 <= d < len(probs) for d in draws):
                return None  # the comparisons have already said what is wrong with the returned value
            counts = torch.bincount(torch.tensor(draws), minlength=len(probs)).double() / len(draws)
            if (counts[probs == 0] > 0).any():
                return (f"Over {len(draws)} draws at temperature {temperature}, a token whose logit is -inf came out; "
                        "its probability is 0, so it must never be drawn.")
            gap = (counts - probs).abs().max().item()
            if gap > STAT_TOLERANCE:
                return (f"Over {len(draws)} draws at temperature {temperature}, how often a token comes out differs "
                        f"from its probability softmax(logits / temperature) by up to {gap:.2f} (allowed: "
                        f"{STAT_TOLERANCE}). Draw from softmax(logits / temperature).")
        return None
    return cases, judge


@sample_next.mistake("the logits are multiplied by the temperature instead of divided by it: softmax(logits / temperature).")
def temperature_multiplies(ref):
    return lambda logits, temperature, generator: ref.sample_next(
        logits * temperature * temperature if temperature > 0 else logits, temperature, generator)


@sample_next.mistake("the temperature is ignored: divide the logits by it before the softmax.")
def ignores_temperature(ref):
    return lambda logits, temperature, generator: ref.sample_next(logits, 1.0 if temperature > 0 else 0.0, generator)


@sample_next.mistake("temperature 0 should mean 'take the most probable token' (argmax), without drawing.")
def samples_at_zero_temperature(ref):
    return lambda logits, temperature, generator: ref.sample_next(logits, temperature or 1.0, generator)


@sample_next.mistake("the draw does not use `generator`: pass generator=generator to torch.multinomial, so that "
                     "the same seed gives the same draws.")
def ignores_generator(ref):
    return lambda logits, temperature, generator: ref.sample_next(logits, temperature, None)


@sample_next.mistake("it always returns the most probable token: with a temperature above 0, draw one token with "
                     "torch.multinomial.")
def always_argmax(ref):
    return lambda logits, temperature, generator: ref.sample_next(logits, 0.0, generator)


# ------------------------------------------------------------------ top_k and top_p
def _filter_binder(name: str) -> Callable:
    def bind(impl, device, logits, cutoff):
        given = logits.clone()
        out = impl(given, cutoff)
        if not torch.equal(given, logits):
            raise CheckFailure(f"`{name}` changed the logits it was given (in place). Leave its input as it is and "
                               "return a new tensor: use masked_fill, not masked_fill_ or logits[...] = ....")
        return out
    return bind


def _zero_filled(filter_: Callable) -> Callable:
    """A wrong version of a filter (top-k, top-p) that sets the dropped logits to 0 instead of -inf."""
    return changed_output(filter_, lambda kept, logits, cutoff: torch.where(torch.isneginf(kept), torch.zeros_like(logits),
                                                                           logits))


def _on_the_first_axis(filter_: Callable) -> Callable:
    """A wrong version of a filter (top-k, top-p) that works along the first axis instead of the vocabulary."""
    return lambda logits, cutoff: filter_(logits.transpose(0, -1), cutoff).transpose(0, -1)


def _sorted(filter_: Callable) -> Callable:
    """A wrong version of a filter (top-k, top-p) that returns the kept logits sorted, not at their token ids."""
    return changed_output(filter_, lambda kept, logits, cutoff: kept.sort(dim=-1, descending=True).values)


def _in_place(filter_: Callable) -> Callable:
    """A wrong version of a filter (top-k, top-p) that writes its result into the logits it was given."""
    return lambda logits, cutoff: logits.copy_(filter_(logits, cutoff))


def _filter_mistake(exercise: Exercise, key: str, message: str, wrong: Callable, expect: str | None = None) -> None:
    """A mistake both filters share: ``wrong`` (one of the above) applied to the reference's own filter."""
    add_mistake(exercise, key, message, lambda ref: wrong(getattr(ref, exercise.name)), expect)


top_k_filter = Exercise(
    "top_k_filter", ASSIGNMENT, call=Bound(_filter_binder("top_k_filter")),
    infinities="Here -inf marks a dropped token: every logit at least the k-th largest of its row keeps its value "
               "(ties included), every other one becomes -inf, and a logit that is -inf already stays -inf.", points=(1, 1), difficulty=2, minutes=15, task=r"the logits with all but those at least as large as the $k$-th largest set to $-\infty$")


def _k_case(logits, k, note=""):
    return Case(f"logits {tuple(logits.shape)}{note}, k={k}", (logits, k))


@top_k_filter.cases
def _(g, hidden):
    if not hidden:
        return [
            _k_case(randn(g, 2, 6), 3),
            _k_case(torch.tensor([1.0, 3.0, 2.0, 2.0, 0.5, -1.0], dtype=torch.float64), 2,
                    " with a tie for the 2nd largest"),
            _k_case(randn(g, 3, 5), 5, " (k = V: keep everything)"),
            _k_case(torch.tensor([0.3, NEG_INF, 1.2, NEG_INF], dtype=torch.float64), 1, " with -inf entries"),
        ]
    few_finite = randn(g, 2, 6)
    few_finite[:, 1:5] = NEG_INF
    return [
        _k_case(randn(g, 3, 10), 4),
        _k_case(randn(g, 2, 4, 12), 1),
        _k_case(randn(g, 5, 7), 7, " (k = V)"),
        _k_case(randn(g, 2, 9), 20, " (k > V)"),
        _k_case(few_finite, 3, ", only 2 finite entries per row"),
        _k_case(transposed(g, 5, 8), 3, " (non-contiguous)"),
        _k_case(torch.randint(-3, 4, (4, 10), generator=g).double(), 3, ", whole numbers with ties"),
    ]


def _kth_kept(kept: torch.Tensor) -> torch.Tensor:
    """The smallest value that survived a filter, per row (+inf where nothing finite survived)."""
    return torch.where(torch.isneginf(kept), torch.full_like(kept, float("inf")), kept).amin(-1, keepdim=True)


@top_k_filter.mistake("the k smallest logits are kept instead of the k largest.")
def keeps_smallest(ref):
    def wrong(logits, k):
        flipped = ref.top_k_filter(-logits, k)
        return torch.where(torch.isneginf(flipped), flipped, logits)
    return wrong


@top_k_filter.mistake("only logits strictly above the k-th largest are kept, so the k-th largest itself (and any tie "
                      "with it) is dropped: keep every logit >= the k-th largest.")
def strict_threshold(ref):
    def wrong(logits, k):
        threshold = _kth_kept(ref.top_k_filter(logits, k))
        return logits.masked_fill(~(logits > threshold), NEG_INF)
    return wrong


_filter_mistake(top_k_filter, "fills_zero", "the dropped logits are set to 0 instead of -inf; a logit of 0 still has a "
                "sizeable probability.", _zero_filled)
_filter_mistake(top_k_filter, "wrong_axis", "the k largest are chosen along the first axis instead of along the last "
                "axis (the vocabulary).", _on_the_first_axis)


@top_k_filter.mistake("k + 1 logits are kept instead of k.")
def one_too_many(ref):
    return lambda logits, k: ref.top_k_filter(logits, k + 1)


_filter_mistake(top_k_filter, "sorted_output", "the result is sorted: each kept logit must stay at its own token id "
                "(its position along the last axis).", _sorted)
_filter_mistake(top_k_filter, "in_place", "changes its input in place", _in_place,
                expect="changed the logits it was given (in place)")


top_p_filter = Exercise(
    "top_p_filter", ASSIGNMENT, call=Bound(_filter_binder("top_p_filter")),
    infinities="Here -inf marks a dropped token: a token is kept (with its own logit) when the tokens more probable "
               "than it hold less than p; every other token becomes -inf, and a -inf logit stays -inf.", points=(1, 2), difficulty=3, minutes=25, task=r"the logits with all but the smallest most-probable set holding $p$ set to $-\infty$")


def _safe_p(g: torch.Generator, logits: torch.Tensor, low: float, high: float) -> float:
    """A p in [low, high] at least 0.002 away from every running total of the sorted probabilities,
    so that float32 rounding cannot move a token across the cut."""
    totals = torch.softmax(logits.double(), -1).sort(-1, descending=True).values.cumsum(-1).flatten()
    for _ in range(1000):
        p = low + (high - low) * float(torch.rand(1, generator=g, dtype=torch.float64))
        if (totals - p).abs().min() > 0.002:
            return round(p, 4)
    raise RuntimeError("no safe p found")  # pragma: no cover (the inputs here always leave room)


def _p_case(logits, p, note=""):
    return Case(f"logits {tuple(logits.shape)}{note}, p={p}", (logits, p))


@top_p_filter.cases
def _(g, hidden):
    if not hidden:
        first = randn(g, 2, 6)
        return [
            _p_case(first, _safe_p(g, first, 0.7, 0.9)),
            _p_case(torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64).log(), 0.75,
                    " holding probabilities (0.5, 0.3, 0.15, 0.05)"),
            _p_case(torch.tensor([1.0, NEG_INF, -0.5, 2.0, 0.0, 0.3], dtype=torch.float64), 1.0,
                    " with a -inf entry (p = 1: keep everything)"),
            _p_case(randn(g, 3, 5), 1e-9, " (p near 0: keep only the most probable)"),
            _p_case(torch.zeros(5, dtype=torch.float64), 0.5, " all equal (a five-way tie)"),
        ]
    cases = []
    for shape, low, high, note in (((6, 8), 0.75, 0.9, ""), ((2, 3, 16), 0.4, 0.7, ""), ((4, 6), 0.05, 0.3, "")):
        logits = randn(g, *shape, scale=1.5)
        cases.append(_p_case(logits, _safe_p(g, logits, low, high), note))
    with_inf = randn(g, 3, 7).index_fill(-1, torch.tensor([0, 4]), NEG_INF)
    shuffled = transposed(g, 4, 9)
    ties = torch.randint(-2, 3, (3, 8), generator=g).double()
    peaked = randn(g, 2, 12, scale=5)
    cases += [
        _p_case(randn(g, 10), 1.0, " (p = 1)"),
        _p_case(randn(g, 4, 6), 1e-6, " (p near 0)"),
        _p_case(with_inf, _safe_p(g, with_inf, 0.5, 0.9), " with -inf entries"),
        _p_case(shuffled, _safe_p(g, shuffled, 0.3, 0.9), " (non-contiguous)"),
        _p_case(ties, _safe_p(g, ties, 0.3, 0.9), ", whole numbers with ties"),
        _p_case(peaked, _safe_p(g, peaked, 0.5, 0.99), ", sharply peaked"),
    ]
    return cases


@top_p_filter.prop("the kept tokens are the most probable ones, hold at least p of the probability, "
                   "and would hold less than p without the least probable of them")
def _(g):
    logits = randn(g, 4, 10, scale=1.5)
    p = _safe_p(g, logits, 0.3, 0.9)

    def judge(results, dtype):
        out = results[0].output
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(logits.shape):
            return None  # the comparisons have already said what is wrong with the shape
        kept = ~torch.isneginf(out.detach().cpu())
        probs = torch.softmax(logits, -1)
        for row in range(logits.shape[0]):
            mass = probs[row][kept[row]].sum().item()
            if mass < p - 1e-6:
                return "The tokens that top_p_filter(logits, p) keeps hold less than p of the probability: keep more."
            dropped = probs[row][~kept[row]]
            if kept[row].any() and dropped.numel() and probs[row][kept[row]].min() < dropped.max():
                return "top_p_filter dropped a token that is more probable than one it kept: keep the most probable tokens."
            if mass - probs[row][kept[row]].min().item() >= p:
                return ("top_p_filter(logits, p) keeps more tokens than needed: without its least probable kept "
                        "token the rest would still hold at least p. Keep the smallest such set.")
        return None
    return [_p_case(logits, p)], judge


@top_p_filter.mistake("the token whose probability crosses p is dropped: keep it, so that the kept tokens hold at least p "
                      "of the probability (the most probable token is always kept).")
def drops_crossing_token(ref):
    def wrong(logits, p):
        kept = ref.top_p_filter(logits, p)
        probs = torch.softmax(logits, dim=-1).masked_fill(torch.isneginf(kept), float("inf"))
        return kept.scatter(-1, probs.argmin(-1, keepdim=True), NEG_INF)
    return wrong


@top_p_filter.mistake("p is the probability to keep, not the probability to drop: this keeps tokens up to 1 - p.")
def one_minus_p(ref):
    return lambda logits, p: ref.top_p_filter(logits, 1 - p)


_filter_mistake(top_p_filter, "fills_zero", "the dropped logits are set to 0 instead of -inf; a logit of 0 still has a "
                "sizeable probability.", _zero_filled)
_filter_mistake(top_p_filter, "wrong_axis", "the tokens are sorted along the first axis instead of along the last axis "
                "(the vocabulary).", _on_the_first_axis)
_filter_mistake(top_p_filter, "sorted_output", "the result is still in sorted order: put each kept logit back at its "
                "own token id (scatter with the sorting indices).", _sorted)
_filter_mistake(top_p_filter, "in_place", "changes its input in place", _in_place,
                expect="changed the logits it was given (in place)")
