"""The book builds warning-free, offline, and holds its pages and build-time figures."""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, env_with_venv


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{f}.html" for f in files]


PAGES = _toc_pages()


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    vendored = ROOT / "book" / "_static" / "vendor" / "mathjax" / "tex-chtml.js"
    assert vendored.is_file(), "run `bash tools/vendor_assets.sh` (make test does) before the book test"
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run([str(BIN / "jupyter-book"), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
                            cwd=ROOT, env=env_with_venv(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "WARNING:" not in result.stdout + result.stderr  # Sphinx warnings (not the kernel's log lines)
    return out / "_build" / "html"


@pytest.mark.parametrize("page", PAGES)
def test_page_is_built(html, page):
    assert (html / page).is_file()


def test_ch04_figures_were_generated_at_build_time_with_alt_text(html):
    text = (html / "book/ch04_scaled_dot_product.html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]+\.png)"[^>]*>', text)
    assert len(images) >= 2
    for tag in re.findall(r"<img[^>]*>", text):
        assert re.search(r'alt="[^"]+"', tag), f"an image without alt text: {tag}"
    for src in images:
        assert (html / "book" / src).resolve().is_file(), src


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_nothing_from_other_hosts(html, page):
    text = (html / page).read_text()
    loaded = re.findall(r'<(?:script|link|img|iframe)[^>]*(?:src|href)="(https?:)?//[^"]*"', text)
    assert not loaded, f"{page} loads from the network: {loaded}"


def test_math_is_typeset_by_the_vendored_mathjax(html):
    assert "_static/vendor/mathjax/tex-chtml.js" in (html / "book/ch04_scaled_dot_product.html").read_text()
    assert (html / "_static/vendor/mathjax/tex-chtml.js").is_file()


def test_misconceptions_are_corrected_on_the_page(html):
    text = (html / "book/ch04_scaled_dot_product.html").read_text()
    assert text.count("Common misconception") >= 4
