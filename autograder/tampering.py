"""Whether a student's code reaches into the checking machinery, decided from what the code does.

Each code cell the student could have written is parsed (after IPython turns its magics into
Python, so ``%%time`` and ``%timeit`` bodies are read too) and its syntax tree is read for
what it uses: names, attributes, imports and calls. Comments are not in the tree; docstrings
and other strings are read only where they act as code: the name handed to ``getattr``,
``setattr`` or ``vars(x)[...]``, the module handed to ``importlib.import_module`` or
``__import__``, the code handed to ``exec``, ``eval``, ``compile`` or an IPython magic (read as
code in turn), and the name of the exchange folder through which the kernel hands back its
results. A student's helper that shares a name with one of these, a docstring that mentions
them, a variable called ``modules``: none of these is tampering.

What counts as reaching into the machinery:

- the autograder's own modules, other than ``check``, ``check_hidden``, ``CheckFailure`` and the
  lent ``autograder.components``;
- the interpreter's module table and namespaces (``sys.modules``, ``builtins``, ``__globals__``,
  frames), through which any of the above can be replaced without importing it;
- the kernel's exception display (the shell's ``set_custom_exc`` and ``showtraceback``, whether
  reached from ``get_ipython()`` or IPython's classes, and ``_render_traceback_``);
- torch's function and dispatch hooks (``TorchFunctionMode``, ``__torch_function__``...), which
  the watch for forbidden built-ins is made of;
- the grading exchange (``AUTOGRADER_EXCHANGE``, the ``autograder-exchange-`` folder).

The grader's secret seed is not on the list: it is never passed into the grading kernel, so
reading the environment for it finds nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import protocol

ALLOWED_FROM_AUTOGRADER = {"check", "check_hidden", "CheckFailure", "components", "*"}
HOOKS = frozenset(
    {  # attributes and names that are the machinery itself, on whatever object
        "_render_traceback_",
        "__torch_function__",
        "__torch_dispatch__",
        "TorchFunctionMode",
        "TorchDispatchMode",
        "_push_mode",
        "_pop_mode",
        "_pop_mode_temporarily",
        "_set_torch_function_mode",
        "_disable_torch_function",
        "_disable_torch_function_subclass",
        "DisableTorchFunction",
        "DisableTorchFunctionSubclass",
        "_python_dispatch",
        "__globals__",
        "__builtins__",
        "f_globals",
        "f_locals",
        "f_back",
        "tb_frame",
        "gi_frame",
    }
)
NAME_HOOKS = frozenset(
    {  # the same, as names a cell may bind or use
        "__torch_function__",
        "__torch_dispatch__",
        "TorchFunctionMode",
        "TorchDispatchMode",
        "__builtins__",
        "_render_traceback_",
        "DisableTorchFunction",
        "DisableTorchFunctionSubclass",
    }
)
DEFINED_HOOKS = frozenset({"__torch_function__", "__torch_dispatch__", "_render_traceback_"})
MODULE_ATTRIBUTES = {  # module -> attributes that reach other modules' insides
    "sys": {"modules", "_getframe"},
    "gc": {"get_objects", "get_referrers", "get_referents"},
    "inspect": {"currentframe", "stack", "getouterframes"},
}
SHELL = "IPython.shell"  # what get_ipython() returns, as a path
SHELL_HOOKS = {"set_custom_exc", "showtraceback", "_showtraceback", "showsyntaxerror", "custom_exceptions"}
NAMESPACE_MODULES = {"builtins", "__builtin__"}
EXCHANGE_WORDS = (protocol.ENV, protocol.PREFIX.rstrip("-"))
GETATTR_FAMILY = {"getattr", "setattr", "delattr", "hasattr"}
IMPORTERS = {"__import__", "importlib.import_module", "importlib.__import__"}
CODE_RUNNERS = {"exec", "eval", "compile"}  # their first argument is code
IPYTHON_RUNNERS = {"run_cell": 0, "run_line_magic": 1, "run_cell_magic": 2, "ex": 0, "ev": 0}
MESSAGE_CALLS = {"print", "display", "warn", "Markdown", "HTML"}  # their string arguments are words


@dataclass(frozen=True)
class Finding:
    cell: int  # counted from 1, as Jupyter shows cells
    line: int
    what: str  # "uses `sys.modules`"

    def __str__(self) -> str:
        return f"cell {self.cell}, line {self.line} {self.what}"


def constant_string(node: ast.AST | None) -> str | None:
    """The value of a string built only from literals ('a' + 'b', f'{"a"}b', ''.join(['a', 'b']))."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = constant_string(node.left), constant_string(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [constant_string(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return "".join(parts) if all(p is not None for p in parts) else None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], (ast.List, ast.Tuple))
    ):
        separator = constant_string(node.func.value)
        parts = [constant_string(e) for e in node.args[0].elts]
        return separator.join(parts) if separator is not None and all(p is not None for p in parts) else None
    return None


def _python(source: str) -> str:
    """The cell as the kernel runs it: IPython's magics and shell escapes turned into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # IPython could not read the magics: read the cell as plain Python
        return source


def _words(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are words, not code: docstrings, bare string statements, and the
    strings inside messages (print, display, warnings, raised errors, assert messages)."""
    words: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            words.add(id(node.value))
        elif isinstance(node, ast.Call) and _last_name(node.func) in MESSAGE_CALLS:
            words.update(id(n) for a in node.args + [k.value for k in node.keywords] for n in ast.walk(a))
        elif isinstance(node, ast.Raise) and node.exc is not None:
            words.update(id(n) for n in ast.walk(node.exc))
        elif isinstance(node, ast.Assert) and node.msg is not None:
            words.update(id(n) for n in ast.walk(node.msg))
    return words


def _last_name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


class _Scan:
    """One notebook's scan: the module names its imports bind, and what each cell uses."""

    def __init__(self):
        self.modules: dict[str, str] = {}  # a name bound by an import -> the module's dotted path
        self.findings: list[Finding] = []

    # -- names --------------------------------------------------------------------------------
    def path(self, node: ast.AST) -> str | None:
        """The dotted path an expression stands for when it starts from an imported module or the shell."""
        if isinstance(node, ast.Name):
            return self.modules.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.path(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            if _last_name(node.func) == "get_ipython":
                return SHELL
            if node.args and (self.is_importer(node.func) or _last_name(node.func) == "type"):
                return constant_string(node.args[0]) if self.is_importer(node.func) else self.path(node.args[0])
        return None

    def is_importer(self, function: ast.AST) -> bool:
        return self.path(function) in IMPORTERS or (isinstance(function, ast.Name) and function.id == "__import__")

    def bind(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.modules[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):  # m = sys; ip = get_ipython(); s = importlib.import_module("sys")
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                path = self.path(node.value)
                if path:
                    self.modules[node.targets[0].id] = path

    # -- rules ----------------------------------------------------------------------------------
    @staticmethod
    def module_problem(module: str) -> str | None:
        parts = module.split(".")
        if parts[0] in NAMESPACE_MODULES:
            return f"imports `{parts[0]}`"
        if parts[0] == "autograder" and len(parts) > 1 and parts[1] not in ALLOWED_FROM_AUTOGRADER:
            return f"imports `{'.'.join(parts[:2])}`"
        return None

    @staticmethod
    def path_problem(path: str) -> str | None:
        parts = path.split(".")
        if path.startswith(("IPython.", SHELL)) and parts[-1] in SHELL_HOOKS:
            return f"uses `{parts[-1]}`"
        for i, part in enumerate(parts[:-1]):
            if parts[i + 1] in MODULE_ATTRIBUTES.get(part, ()):
                return f"uses `{part}.{parts[i + 1]}`"
        if parts[0] in NAMESPACE_MODULES:
            return f"uses `{parts[0]}`"
        if parts[0] == "autograder" and len(parts) > 1 and parts[1] not in ALLOWED_FROM_AUTOGRADER:
            return f"uses `autograder.{parts[1]}`"
        return None

    def attribute_problem(self, owner: ast.AST, name: str) -> str | None:
        if name in HOOKS:
            return f"uses `{name}`"
        base = self.path(owner)
        return self.path_problem(f"{base}.{name}") if base else None

    def scan(self, source: str, cell: int, line_of: Callable[[int], int], depth: int = 0) -> None:
        try:
            tree = ast.parse(_python(source))
        except (SyntaxError, ValueError):
            return  # the kernel cannot run it either
        self.bind(tree)
        words = _words(tree)
        for node in ast.walk(tree):
            problem = self.problem(node, words)
            if problem:
                self.findings.append(Finding(cell, line_of(getattr(node, "lineno", 1)), problem))
            code = self.code_argument(node) if depth < 5 else None
            if code is not None:
                outer = line_of(node.lineno)
                magic = isinstance(node.func, ast.Attribute) and node.func.attr == "run_cell_magic"
                self.scan(
                    code, cell, (lambda inner, o=outer: o + inner) if magic else (lambda inner, o=outer: o), depth + 1
                )

    def problem(self, node: ast.AST, words: set[int]) -> str | None:
        if isinstance(node, ast.Import):
            return next((p for a in node.names if (p := self.module_problem(a.name))), None)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found = self.module_problem(node.module)
            if node.module == "autograder":
                extra = [a.name for a in node.names if a.name not in ALLOWED_FROM_AUTOGRADER]
                found = f"imports `autograder.{extra[0]}`" if extra else None
            return found or next(
                (
                    p
                    for a in node.names
                    if (
                        p := self.path_problem(f"{node.module}.{a.name}")
                        or (f"uses `{a.name}`" if a.name in HOOKS else None)
                    )
                ),
                None,
            )
        if isinstance(node, ast.Attribute):
            return self.attribute_problem(node.value, node.attr)
        if isinstance(node, ast.Name) and node.id in NAME_HOOKS:
            return f"uses `{node.id}`"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in DEFINED_HOOKS:
            return f"defines `{node.name}`"
        if isinstance(node, ast.Call):
            return self.call_problem(node)
        if isinstance(node, ast.Subscript):  # vars(sys)["modules"], sys.__dict__["modules"]
            key = constant_string(node.slice)
            value = node.value
            owner = (
                value.args[0]
                if isinstance(value, ast.Call) and _last_name(value.func) == "vars" and value.args
                else value.value
                if isinstance(value, ast.Attribute) and value.attr == "__dict__"
                else None
            )
            if key is not None and owner is not None:
                return self.attribute_problem(owner, key)
        if isinstance(node, (ast.Constant, ast.JoinedStr, ast.BinOp)) and id(node) not in words:
            text = constant_string(node)
            if text and any(word in text for word in EXCHANGE_WORDS):
                return "reaches the grading exchange"
        return None

    def call_problem(self, node: ast.Call) -> str | None:
        function = _last_name(node.func)
        if function in GETATTR_FAMILY and len(node.args) >= 2:
            name = constant_string(node.args[1])
            return self.attribute_problem(node.args[0], name) if name is not None else None
        if node.args and self.is_importer(node.func):
            module = constant_string(node.args[0])
            return self.module_problem(module) if module else None
        return None

    @staticmethod
    def code_argument(node: ast.AST) -> str | None:
        """The code a call hands to exec/eval/compile or to IPython, when it is written out in full."""
        if not isinstance(node, ast.Call):
            return None
        if isinstance(node.func, ast.Name) and node.func.id in CODE_RUNNERS:
            position = 0
        elif isinstance(node.func, ast.Attribute) and node.func.attr in IPYTHON_RUNNERS:
            position = IPYTHON_RUNNERS[node.func.attr]
        else:
            return None
        return constant_string(node.args[position]) if len(node.args) > position else None


def scan(cells: Iterable[tuple[int, str]]) -> list[Finding]:
    """Every place where the student's code reaches into the checking machinery, in notebook order.

    ``cells``: (index in the notebook, source) of each code cell the student could have written.
    """
    cells = list(cells)
    scanner = _Scan()
    for _, source in cells:  # names imported in one cell are used in later ones
        try:
            scanner.bind(ast.parse(_python(source)))
        except (SyntaxError, ValueError):
            continue
    for index, source in cells:
        scanner.scan(source, index + 1, lambda line: line)
    return sorted(set(scanner.findings), key=lambda f: (f.cell, f.line, f.what))
