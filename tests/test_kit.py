"""The student kit: a wheel with the visible checks and nothing that reaches an answer.

tests/test_site.py installs the kit a student downloads into a fresh virtualenv and runs a
notebook with it; here: what the wheel holds and leaves out, the measure of answers it uses,
the kit's own behaviour without the reference, and the deployment settings of the site.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, env_with_venv
from freshvenv import FreshVenv

from autograder import kit
from autograder.exercises import ASSIGNMENTS, EXERCISES

pytestmark = pytest.mark.xdist_group("kit")
sys.path.insert(0, str(ROOT / "tools" / "kit"))
import site_config  # noqa: E402


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kit")
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "kit", "--output", str(out)],
        cwd=ROOT,
        env=env_with_venv(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    [built] = out.glob("*.whl")
    print(f"kit: {built.name}, {built.stat().st_size / 1024:.0f} KiB")
    return built


def test_the_wheel_holds_the_engine_fixtures_and_components_and_no_instructor_module(wheel):
    names = set(kit.wheel_files(wheel))
    assert built_name_is_pure_python(wheel.name)
    modules = {Path(n).name for n in names if n.startswith("autograder/") and n.endswith(".py")}
    assert not modules & set(kit.INSTRUCTOR_ONLY), modules & set(kit.INSTRUCTOR_ONLY)
    assert {"checks.py", "spec.py", "runner.py", "verdict.py", "progress.py"} <= modules
    assert {f"autograder/components/{m}.py" for m in ("attention", "layers", "transformer")} <= names
    fixtures = {str(p.relative_to(ROOT)) for p in (ROOT / "autograder" / "fixtures").rglob("*.safetensors")}
    assert fixtures and fixtures <= names
    assert not any(n.endswith((".ipynb", ".pyc")) or "solutions" in n for n in names)
    metadata = next(content for n, content in kit.wheel_files(wheel).items() if n.endswith("METADATA")).decode()
    assert "Name: transformer-course-kit" in metadata and "Requires-Dist: torch>=2.3" in metadata


def built_name_is_pure_python(name: str) -> bool:
    return name == kit.wheel_name() and name.endswith("-py3-none-any.whl")


def test_the_wheel_holds_no_reference_solution(wheel):
    found, measure = kit.leaks(kit.wheel_files(wheel))
    assert set(measure) == set(EXERCISES)
    assert not found, "the kit hands out solutions:\n" + "\n".join(
        f"{leak.file}: {leak.exercise}: {leak.statement}" for leak in found
    )


def test_the_measure_finds_every_distinctive_line_in_the_solutions_themselves():
    files = {f"{a}.ipynb": (ROOT / "solutions" / a / f"{a}.ipynb").read_bytes() for a in ASSIGNMENTS}
    _, measure = kit.leaks(files)
    assert sum(total for _, total in measure.values()) > 2 * len(EXERCISES)
    assert all(found == total for found, total in measure.values()), measure


def test_the_measure_sees_through_indentation_and_spacing_but_not_contract_or_trivial_lines():
    lines = kit.distinctive_lines("ch09_encoder")["Encoder"]
    assert "returnxifself.normisNoneelseself.norm(x)" in lines
    assert not any(line.startswith("self.norm=") for line in lines), "the contract fixes what `norm` holds"
    assert "x=layer(x,mask)" not in lines, "one step (a call) gives nothing away"
    reformatted = (
        b"def forward(self, x, mask=None):\n        return  x if self.norm is None \\\n  else self.norm( x )  # done\n"
    )
    found, measure = kit.leaks({"somewhere/else.py": reformatted})
    assert ("Encoder", "returnxifself.normisNoneelseself.norm(x)") in {
        (leak.exercise, leak.statement) for leak in found
    }
    assert measure["Encoder"][0] == 1
    inside_a_longer_line = b"print(x if self.norm is None else self.norm(x))\n"
    assert not [leak for leak in kit.leaks({"other.py": inside_a_longer_line})[0] if leak.exercise == "Encoder"]


def test_a_kit_that_would_hold_an_answer_is_not_written(tmp_path, monkeypatch):
    package = tmp_path / "autograder"
    kit.stage(tmp_path)
    solution = json.loads((ROOT / "solutions" / "ch09_encoder" / "ch09_encoder.ipynb").read_text())
    encoder = next(c for c in solution["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "Encoder")
    (package / "components" / "copied.py").write_text("".join(encoder["source"]))
    monkeypatch.setattr(kit, "PACKAGE", package)
    with pytest.raises(RuntimeError, match=r"components/copied.py holds a line of Encoder's solution"):
        kit.build(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _in_the_kit(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh virtualenv whose only autograder is the staged kit."""
    kit.stage(tmp_path / "staged")
    fresh = FreshVenv(tmp_path / "venv")
    fresh.add_path(tmp_path / "staged")
    return fresh.run("-c", code, timeout=300)


def test_without_the_reference_the_exercises_load_and_check_hidden_says_where_it_runs(tmp_path):
    result = _in_the_kit(
        tmp_path,
        "\n".join(
            [
                "import importlib.util, autograder",
                "from autograder import check, check_hidden, CheckFailure",
                "from autograder.exercises import EXERCISES",
                "import autograder.components",
                "assert importlib.util.find_spec('autograder.reference') is None",
                "print(autograder.__file__)",
                "print(len(EXERCISES))",
                "check_hidden('softmax', lambda x, dim=-1: x)",
                "try:",
                "    check('softmax', lambda x, dim=-1: x)",
                "except CheckFailure as failure:",
                "    print('visible:', failure)",
            ]
        ),
    )
    assert result.returncode == 0, result.stderr
    where, count, hidden, visible = result.stdout.splitlines()[:4]
    assert Path(where).is_relative_to(tmp_path / "staged")
    assert int(count) == len(EXERCISES)
    assert hidden == (
        "The hidden checks of 'softmax' run only when your notebook is graded; "
        "check('softmax', ...) runs the visible ones now."
    )
    assert visible.startswith("visible: ") and "problem in the course" not in visible


def test_the_kit_offers_the_students_commands_only(tmp_path):
    result = _in_the_kit(
        tmp_path, "import sys; sys.argv = ['autograder', '--help']; from autograder.__main__ import main; main()"
    )
    commands = re.search(r"\{(.*?)\}", result.stdout)
    offered = set(commands.group(1).split(",")) if commands else set(re.findall(r"^    (\w+)\s", result.stdout, re.M))
    assert {"progress", "doctor"} <= offered and not offered & {"fixtures", "release", "grade", "kit"}, result.stdout


def test_the_book_names_the_wheel_that_is_built():
    mentioned = set(
        re.findall(
            r"transformer_course_kit-[^\s`<>\"]+?\.whl",
            (ROOT / "_config.yml").read_text() + (ROOT / "book" / "how_this_course_works.md").read_text(),
        )
    )
    assert mentioned == {kit.wheel_name()}


def test_every_notebook_says_what_to_install_in_its_first_cell():
    for assignment in ASSIGNMENTS:
        notebook = json.loads((ROOT / "exercises" / assignment / f"{assignment}.ipynb").read_text())
        first = next(c for c in notebook["cells"] if c["cell_type"] == "code")
        source = "".join(first["source"])
        assert (
            source.startswith("try:") and "except ModuleNotFoundError" in source and "How this course works" in source
        ), assignment


# --- The site's deployment settings ------------------------------------------------------------

BASE = yaml.safe_load((ROOT / "_config.yml").read_text())
LAUNCH_URLS = ("colab.research.google.com", "mybinder.org", "hub.example.org")


def test_the_default_build_has_no_launch_button_and_no_repository():
    assert site_config.deployment_config({}, BASE) == BASE
    assert not any(BASE["launch_buttons"][key] for key in ("binderhub_url", "jupyterhub_url", "colab_url"))
    assert not BASE["repository"]["url"]


def test_a_deployment_sets_its_address_and_launch_buttons():
    config = site_config.deployment_config(
        {
            "SITE_URL": "https://course.example.org/transformer/",
            "SITE_REPOSITORY_URL": "https://github.com/org/course",
            "SITE_BINDERHUB_URL": "https://mybinder.org",
            "SITE_JUPYTERHUB_URL": "https://hub.example.org",
            "SITE_COLAB": "1",
        },
        BASE,
    )
    assert config["launch_buttons"] == {
        **BASE["launch_buttons"],
        "binderhub_url": "https://mybinder.org",
        "jupyterhub_url": "https://hub.example.org",
        "colab_url": "https://colab.research.google.com",
    }
    assert config["repository"]["url"] == "https://github.com/org/course"
    assert config["html"]["baseurl"] == "https://course.example.org/transformer/"
    assert config["parse"]["myst_substitutions"]["colab_install"] == (
        f"`%pip install https://course.example.org/transformer/{kit.wheel_name()}`"
    )


def test_launch_buttons_without_a_repository_are_refused_with_one_sentence():
    with pytest.raises(SystemExit, match="set SITE_REPOSITORY_URL"):
        site_config.deployment_config({"SITE_COLAB": "1"}, BASE)


def test_a_build_with_launch_buttons_shows_them(tmp_path):
    """A one-page book with the deployment's configuration: Jupyter Book draws the buttons."""
    config = site_config.deployment_config(
        {
            "SITE_REPOSITORY_URL": "https://github.com/org/course",
            "SITE_BINDERHUB_URL": "https://mybinder.org",
            "SITE_JUPYTERHUB_URL": "https://hub.example.org",
            "SITE_COLAB": "1",
        },
        BASE,
    )
    config["execute"]["execute_notebooks"] = "off"
    config["sphinx"]["config"].pop("html_extra_path")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (tmp_path / "page.md").write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\n"
        "kernelspec:\n  name: python3\n  display_name: Python 3\n---\n"
        "# A page\n\n```{code-cell} ipython3\n1 + 1\n```\n"
    )
    (tmp_path / "book" / "_static").mkdir(parents=True)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(tmp_path)],
        cwd=tmp_path,
        env=env_with_venv(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (tmp_path / "_build" / "html" / "page.html").read_text()
    assert all(url in page for url in LAUNCH_URLS), [url for url in LAUNCH_URLS if url not in page]


# --- Lent parts ------------------------------------------------------------------------------


def test_the_lent_attention_is_chapter_4s_and_chapter_4_does_not_accept_it():
    import torch

    from autograder import CheckFailure, check
    from autograder.components import ScaledDotProductAttention
    from autograder.reference import load

    ref = load("ch04_scaled_dot_product")
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, d, generator=generator, dtype=torch.float64) for n, d in ((4, 8), (6, 8), (6, 5)))
    mask = torch.rand(2, 1, 4, 6, generator=generator) < 0.7
    mask[..., 0] = True
    for got, expected in zip(
        ScaledDotProductAttention()(q, k, v, mask), ref.scaled_dot_product_attention(q, k, v, mask)
    ):
        torch.testing.assert_close(got, expected)
    with pytest.raises(CheckFailure, match="ScaledDotProductAttention"):
        check("scaled_dot_product_attention", lambda q, k, v, mask=None: ScaledDotProductAttention()(q, k, v, mask))
