"""A virtualenv that has never seen this repository, for the tests of the student kit."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import time
from pathlib import Path

import nbformat
from conftest import purelib, read_notebook, virtualenv

RUN_NOTEBOOK = """
import sys, nbformat
from nbclient import NotebookClient
notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, kernel_name="fresh", allow_errors=True, timeout=600).execute()
nbformat.write(notebook, sys.argv[2])
"""


class FreshVenv:
    """A plain virtualenv outside the repository. A .pth names the test environment's third-party
    packages (torch, nbclient, pip...) as one more folder on sys.path; the .pth files inside that
    folder, such as the editable install of this repository's autograder, are not run from there.
    So `python -m pip install <wheel>` installs into this virtualenv, as a student's pip would."""

    def __init__(self, folder: Path):
        self.folder, self.created = folder, time.perf_counter()
        self.python = virtualenv(folder / "venv", [sysconfig.get_paths()["purelib"]], "third_party.pth")
        self.purelib = purelib(self.python)
        kernel = folder / "jupyter" / "kernels" / "fresh"
        kernel.mkdir(parents=True)
        (kernel / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "fresh venv",
                    "language": "python",
                }
            )
        )
        (folder / "run_notebook.py").write_text(RUN_NOTEBOOK)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "AUTOGRADER_", "VIRTUAL_ENV", "JUPYTER", "PIP_"))
        }
        self.env.update(
            JUPYTER_DATA_DIR=str(folder / "jupyter"),
            JUPYTER_CONFIG_DIR=str(folder / "jupyter-config"),
            OMP_NUM_THREADS="1",
            PIP_NO_INDEX="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )

    def run(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.python), *args], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def execute(self, notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
        source, executed = self.folder / f"{name}.ipynb", self.folder / f"{name}.executed.ipynb"
        nbformat.write(notebook, source)
        result = self.run("run_notebook.py", str(source), str(executed))
        assert result.returncode == 0, result.stderr[-4000:]
        return read_notebook(executed)

    def add_path(self, folder: Path) -> None:
        """Put ``folder`` on this virtualenv's sys.path, before the third-party packages."""
        Path(self.purelib, "a_first.pth").write_text(f"{folder}\n")
