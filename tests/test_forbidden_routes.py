"""A forbidden built-in is caught however it is reached (issue 12, part 2).

Each exercise forbids capabilities (``autograder.forbidden``): the ATen operators of a
built-in. Torch reaches one kernel under many names (a private alias, ``torch.ops.aten``,
``torch._C._nn``, a functional or module twin). Every route in tests/forbidden_routes/ (a
text notebook per exercise, one route per code cell) is written as a student would write it,
in the exercise's own cell (or, for a module, in an extra cell that subclasses the reference
and swaps the route into ``forward``), and is rejected with the usual one sentence naming
the built-in:

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
import types
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, autograder_grade, grade_id, read_notebook
from graded_class import scratch_class
from torch import nn

from autograder import check, components, reference
from autograder.errors import CheckFailure
from autograder.exercises import EXERCISES
from autograder.forbidden import capabilities, display_name, scan_forbidden, watch
from autograder.release import solved_notebook


@dataclass
class Route:
    key: str
    source: str  # defines the exercise's name; a module route subclasses the reference (``after``)
    real: bool = True  # with nothing forbidden, the route passes the visible checks
    written: bool = True  # the route is spelled out in the source (not a computed name)
    after: bool = False  # an extra cell after the (reference) solution cell, rather than the cell itself


ROUTE_OPTIONS = {"route", "real", "written", "after"}


def load_routes(path: Path) -> tuple[str, list[Route], str | None]:
    """(exercise, its routes, its honest alternative or None) from a MyST text notebook of
    tests/forbidden_routes/: a code cell per route, with the options `route` (its key) and
    `real`, `written`, `after` (the fields of Route); a cell with `honest: true` is an honest
    alternative that passes."""
    notebook = jupytext.read(path, fmt="md:myst")
    exercise, routes, honest = notebook.metadata.get("exercise"), [], None
    if exercise not in EXERCISES:
        raise ValueError(f"{path.name}: the front matter's `exercise` is {exercise!r}, not an exercise's name")
    for cell in (c for c in notebook.cells if c.cell_type == "code"):
        options = dict(cell.metadata)
        if options == {"honest": True}:
            honest = cell.source + "\n"
        elif "route" in options and set(options) <= ROUTE_OPTIONS:
            routes.append(Route(options.pop("route"), cell.source + "\n", **options))
        else:
            raise ValueError(
                f"{path.name}: a code cell has options {sorted(options)}, not a route's nor `honest: true`"
            )
    return exercise, routes, honest


ROUTE_FILES = [
    load_routes(path) for path in sorted((ROOT / "tests" / "forbidden_routes").glob("*.md")) if path.name != "README.md"
]
ROUTES = {exercise: routes for exercise, routes, _ in ROUTE_FILES}
HONEST = {exercise: honest for exercise, _, honest in ROUTE_FILES if honest}

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


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_alternatives_pass(name):
    source = HONEST[name]
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
    course, env = scratch_class(
        tmp_path_factory.mktemp("course"), list(GRADED), seed="24680", cell_timeout=60, memory_limit=None
    )
    submissions = {}
    for assignment, routes in GRADED.items():
        students = {"reference": None} | {f"{n}-{key}": (n, key) for n, keys in routes.items() for key in keys}
        for student, chosen in students.items():
            nb = solved_notebook(course, assignment)
            if chosen:
                name, key = chosen
                with_route(nb, name, next(r for r in ROUTES[name] if r.key == key))
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
        submissions[assignment] = students
    outputs = {}
    for assignment in GRADED:
        outputs[assignment] = autograder_grade(course, assignment, env, workers=1).stdout
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


@pytest.mark.parametrize(
    "front, cell, says",
    [
        ("exercise: softmax", ":route: alias\n:real: false\nx = 1", None),
        ("exercise: not_an_exercise", ":route: alias\nx = 1", "not an exercise's name"),
        ("exercise: softmax", ":key: alias\nx = 1", "not a route's nor `honest: true`"),
        ("exercise: softmax", ":route: alias\n:honest: true\nx = 1", "not a route's nor `honest: true`"),
    ],
    ids=["a-route", "unknown-exercise", "no-route-key", "route-and-honest"],
)
def test_a_routes_file_is_read_or_refused_with_one_sentence(tmp_path, front, cell, says):
    path = tmp_path / "routes.md"
    path.write_text(f"---\n{front}\n---\n\nRoutes.\n\n```{{code-cell}} ipython3\n{cell}\n```\n")
    if says is None:
        assert load_routes(path) == ("softmax", [Route("alias", "x = 1\n", real=False)], None)
    else:
        with pytest.raises(ValueError, match=says):
            load_routes(path)
