"""Dependencies by use (pyproject.toml): what ``import am`` and the ground-truth command line load
needs only the base dependencies, every third-party import of the code is declared, and the
extras hold what their users import. Static (the imports as written, followed through the
package's own modules): a fresh interpreter's check is in tests/test_imports.py, and a plain
``pip install .`` running the README's example in tests/test_plain_install.py."""

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPTIONAL = PROJECT["optional-dependencies"]
# the modules a plain install must import: the library's packages and the ground-truth CLI
LIGHT = [
    "am", "am.conditions", "am.metrics", "am.methods", "am.models", "am.problems",
    "am.rewards", "am.schedules", "am.vision", "am.t2i", "baselines", "amcli",
    "amcli.__main__", "amcli.run", "amcli.logs",
]  # fmt: skip


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str) -> set[str]:
    """The distributions the base install plus ``extras`` pull, self-references such as
    ``adjoint-matching[tables]`` resolved."""
    todo = [*PROJECT["dependencies"], *(r for e in extras for r in OPTIONAL[e])]
    names = set()
    while todo:
        requirement = todo.pop()
        nested = re.fullmatch(rf"{PROJECT['name']}\[(.+)\]", requirement)
        if nested:
            todo += [r for e in nested.group(1).split(",") for r in OPTIONAL[e.strip()]]
        else:
            names.add(normalise(re.match(r"[A-Za-z0-9._-]+", requirement).group(0)))
    return names


DISTRIBUTIONS = {
    module: {normalise(d) for d in dists}
    for module, dists in importlib.metadata.packages_distributions().items()
}
LOCAL = {"am", "amcli", "baselines", "workflow", "tests", "benchmarks", "conftest"} | {
    p.stem for p in (ROOT / "tests").rglob("*.py")
}


def module_file(name: str) -> Path | None:
    base = ROOT / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(tree: ast.AST, *, at_import: bool) -> list[str]:
    """Dotted names imported (``from a.b import c`` gives ``a.b`` and ``a.b.c``); with
    ``at_import`` only those run when the module is imported: not in a function's body, not
    under ``if TYPE_CHECKING``."""
    names, todo = [], list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if at_import and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if at_import and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        todo += ast.iter_child_nodes(node)
    return names


def third_party(names) -> set[str]:
    tops = {n.split(".")[0] for n in names}
    return {t for t in tops if t not in sys.stdlib_module_names and t not in LOCAL}


def distributions_of(modules: set[str]) -> set[str]:
    unknown = sorted(m for m in modules if m not in DISTRIBUTIONS)
    if unknown:
        pytest.fail(f"imported but installed by no distribution here: {unknown}")
    return {d for m in modules for d in DISTRIBUTIONS[m]}


def import_closure(roots: list[str]) -> dict[str, set[str]]:
    """Every first-party module importing ``roots`` loads (parents' ``__init__`` included) ->
    the third-party modules it imports at import time."""
    seen: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            module = ".".join(parts[:i])
            path = module_file(module)
            if module in seen or path is None:
                continue
            names = imported(ast.parse(path.read_text()), at_import=True)
            seen[module] = third_party(names)
            todo += [n for n in names if n.split(".")[0] in {"am", "amcli", "baselines"}]
    return seen


def test_the_library_loads_only_the_base_dependencies():
    base = declared()
    heavy = {
        module: sorted(distributions_of(mods) - base)
        for module, mods in import_closure(LIGHT).items()
        if distributions_of(mods) - base
    }
    assert heavy == {}, f"imported when the package is, but not a base dependency: {heavy}"


@pytest.mark.parametrize(
    "folder, extras",
    [
        # the code a user installs: what it imports lazily belongs to one of its extras
        ("am", ("tables", "digits", "images")),
        ("baselines", ()),
        ("amcli", ("tables", "workflow", "digits", "images")),
        # the workflow's scripts run in what the workflow extra installs
        ("workflow", ("workflow",)),
        ("tests", tuple(OPTIONAL)),
    ],
)
def test_every_import_is_declared_where_it_is_used(folder, extras):
    allowed = declared(*extras)
    missing = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        modules = third_party(imported(ast.parse(path.read_text()), at_import=False))
        for dist in sorted(distributions_of(modules) - allowed):
            missing.setdefault(dist, []).append(str(path.relative_to(ROOT)))
    assert missing == {}, f"not declared in the base or in {list(extras)}: {missing}"


def test_the_extras_are_by_use():
    base = declared()
    assert base == {"torch", "numpy", "pyyaml", "tqdm", "safetensors"}
    tables = {"pandas", "matplotlib", "seaborn", "tabulate"}
    assert declared("tables") - base == tables
    assert tables <= declared("workflow")  # the workflow draws the tables and figures
    assert "scipy" in declared("dev") and "scipy" not in declared("tables", "workflow", "images")


def test_a_missing_extra_is_named(monkeypatch):
    """Without the ``tables`` extra the figures say what to install; the same for the score
    tables of ``am.vision.evaluate`` without ``images``."""
    from amcli.plotting import method_styles

    monkeypatch.setitem(sys.modules, "seaborn", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'adjoint-matching\[tables\]'"):
        method_styles(["adjoint_matching"])
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.delitem(sys.modules, "am.vision.evaluate", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"adjoint-matching\[images\]"):
        importlib.import_module("am.vision.evaluate")
