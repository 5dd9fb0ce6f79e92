"""The tampering scan reads what code does, never its words (unit tests of autograder/tampering.py).

The graded end-to-end proofs are tests/test_grading_attacks.py (tampering earns nothing and is
listed for review) and tests/test_honest.py (honest notebooks score full marks).
"""

from __future__ import annotations

import nbformat
import pytest
from conftest import ROOT

from autograder import tampering
from autograder.grading import _student_code

HONEST = {
    "comments": "# I did not use any builtins here\n# note: sys.modules is not touched\nx = 1\n",
    "docstring": 'def f():\n    """No torch.softmax, builtins, sys.modules, TorchFunctionMode or AUTOGRADER_SEED."""\n    return 1\n',
    "printed words": 'print("AUTOGRADER_EXCHANGE is not read; sys.modules neither")\n',
    "raised and asserted words": 'assert True, "no sys.modules"\nraise ValueError(f"not {\'autograder-exchange\'}")\n',
    "a variable called modules": "modules = [1]\nclass M:\n    def f(self):\n        return list(self.modules())\n",
    "torch.nn.modules": "import torch\nlayer = torch.nn.modules.Linear\n",
    "a variable called builtins": "builtins = {'len': len}\nbuiltins.get('len')\n",
    "own helpers named like hooks": "def showtraceback():\n    return 1\ndef set_custom_exc(m):\n    return m\nshowtraceback()\n",
    "own methods named like the shell's": (
        "class Notes:\n    def showtraceback(self):\n        return 1\n"
        "Notes().showtraceback()\nnotes = Notes()\nnotes.custom_exceptions = ()\n"
    ),
    "reading sys": "import sys\nprint(sys.version, sys.argv)\n",
    "the allowed autograder names": (
        "import autograder\nautograder.check('softmax', f)\nfrom autograder import check, check_hidden\n"
        "from autograder import CheckFailure\nfrom autograder.components import attention\n"
    ),
    "a magic with comments": "%%time\nx = 1\n# sys.modules\n",
    "a shell escape and line magics": "!echo sys.modules\n%matplotlib inline\n%precision 3\n",
    "the seed (never passed to the kernel)": "import os\nos.environ.get('AUTOGRADER_SEED')\n",
    "a syntax error": "def (:\n",
}
TAMPERING = {
    "sys.modules": ("import sys\nsys.modules['autograder.checks']\n", "line 2 uses `sys.modules`"),
    "sys.modules through getattr": ("import sys\nm = getattr(sys, 'mod' + 'ules')\n", "line 2 uses `sys.modules`"),
    "sys.modules through vars": ("import sys as s\nvars(s)['modules']\n", "line 2 uses `sys.modules`"),
    "from sys import modules": ("from sys import modules\n", "line 1 uses `sys.modules`"),
    "os.sys.modules": ("import os\nos.sys.modules\n", "line 2 uses `sys.modules`"),
    "__import__": ("__import__('sys').modules\n", "line 1 uses `sys.modules`"),
    "an alias": ("import sys\nm = sys\nm.modules\n", "line 3 uses `sys.modules`"),
    "import_module": (
        "import importlib\nimportlib.import_module('autograder.verdict')\n",
        "line 2 imports `autograder.verdict`",
    ),
    "import builtins": ("import builtins\nbuiltins.len = lambda x: 0\n", "line 1 imports `builtins`"),
    "__builtins__": ("__builtins__.len = 1\n", "line 1 uses `__builtins__`"),
    "set_custom_exc": (
        "ip = get_ipython()\nip.set_custom_exc((BaseException,), print)\n",
        "line 2 uses `set_custom_exc`",
    ),
    "setattr showtraceback": ("setattr(get_ipython(), 'showtraceback', None)\n", "line 1 uses `showtraceback`"),
    "the shell's class": (
        "from IPython.core.interactiveshell import InteractiveShell\nInteractiveShell.showtraceback = print\n",
        "line 2 uses `showtraceback`",
    ),
    "type of the shell": ("type(get_ipython()).showtraceback = print\n", "line 1 uses `showtraceback`"),
    "_render_traceback_": (
        "class E(Exception):\n    def _render_traceback_(self):\n        return []\n",
        "line 2 defines `_render_traceback_`",
    ),
    "TorchFunctionMode": ("from torch.overrides import TorchFunctionMode\n", "line 1 uses `TorchFunctionMode`"),
    "a TorchFunctionMode subclass": (
        "import torch\nclass M(torch.overrides.TorchFunctionMode):\n    pass\n",
        "line 2 uses `TorchFunctionMode`",
    ),
    "__torch_function__": ("class T:\n    __torch_function__ = None\n", "line 2 uses `__torch_function__`"),
    "check.__globals__": (
        "from autograder import check\ncheck.__globals__['run_cases'] = None\n",
        "line 2 uses `__globals__`",
    ),
    "the exchange": ("import os\nos.environ['AUTOGRADER_EXCHANGE']\n", "line 2 reaches the grading exchange"),
    "the exchange, spelled in parts": (
        "import os\nos.environ.get('AUTOGRADER' + '_EXCHANGE')\n",
        "line 2 reaches the grading exchange",
    ),
    "the exchange folder": (
        "import glob\nglob.glob('/tmp/autograder-exchange-*')\n",
        "line 2 reaches the grading exchange",
    ),
    "exec": ("x = 1\nexec('import sys; sys.modules')\n", "line 2 uses `sys.modules`"),
    "a cell magic's body": ("%%time\nimport sys\nsys.modules\n", "line 3 uses `sys.modules`"),
    "a line magic": ("%time import sys; sys.modules\n", "line 1 uses `sys.modules`"),
    "autograder internals": (
        "import autograder.verdict\nautograder.verdict.decide = 1\n",
        "line 1 imports `autograder.verdict`",
    ),
    "from autograder import internals": (
        "from autograder import check, checks\n",
        "line 1 imports `autograder.checks`",
    ),
    "frames": ("import sys\nsys._getframe(1)\n", "line 2 uses `sys._getframe`"),
}


@pytest.mark.parametrize("source", HONEST.values(), ids=HONEST.keys())
def test_honest_code_is_not_tampering(source):
    assert tampering.scan([(0, source)]) == []


@pytest.mark.parametrize("source, finding", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_is_found_with_its_cell_and_line(source, finding):
    found = tampering.scan([(6, source)])
    assert found and str(found[0]) == f"cell 7, {finding}", [str(f) for f in found]


def test_an_import_in_one_cell_counts_in_the_next():
    found = tampering.scan([(2, "import sys as system\n"), (4, "x = 1\nsystem.modules.clear()\n")])
    assert [str(f) for f in found] == ["cell 5, line 2 uses `sys.modules`"]


@pytest.mark.parametrize("path", sorted(ROOT.glob("solutions/*/*.ipynb")), ids=lambda p: p.parent.name)
def test_no_reference_notebook_is_tampering(path):
    nb = nbformat.read(path, as_version=4)  # scanned as grading scans it: the cells a student can change
    assert tampering.scan((index, source) for index, _, source in _student_code(nb)) == []
