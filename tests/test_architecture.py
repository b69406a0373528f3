"""The shape of the code (house rules 1, 13 and 15): public names only across packages, no import
cycles, a small app module. The checks read the source with ``ast`` (nothing is imported), and each
is shown to fail on a small synthetic tree, so a passing run means something."""

from __future__ import annotations

import ast
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGES = ("compute", "dashboard")
# private-looking names that are public API of the standard library or of namedtuples
ALLOWED_PRIVATE = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_getframe", "_exit", "_current_frames"})
MAX_APP_LINES = 300


# -- reading the tree ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Module:
    name: str  # dotted: "compute.query._run"; a package's __init__ is the package's name
    path: Path
    is_package: bool
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package this module belongs to (itself for a package's __init__)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def read_modules(root: Path, packages=PACKAGES) -> dict[str, Module]:
    """Every module under ``root``/<package> for each package, by dotted name."""
    out = {}
    for top in packages:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join(parts)
            out[name] = Module(name, path, is_package, _parse(path))
    return out


def _parse(path: Path) -> ast.Module:
    """``path``'s tree, parsed with the garbage collector paused. CPython 3.11 keeps the AST
    constructor's recursion count in one place for the whole interpreter: a collection during a
    parse can run a finalizer that parses too (3.11's traceback formatting does) or hand the GIL to
    a thread that does, and the parse then fails with "SystemError: AST constructor recursion
    depth mismatch" (python/cpython#106905). It did here, after the browser tests' servers."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    finally:
        if enabled:
            gc.enable()


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node`` (module level, function bodies, ...) except ``if TYPE_CHECKING:``
    blocks, which never run."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking_only(child):
            for stmt in child.orelse:
                yield stmt
                yield from _walk_runtime(stmt)
            continue
        yield child
        yield from _walk_runtime(child)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the dotted name imported: a module, or a module's attribute ("compute.query.HitRule")


def imports(module: Module) -> Iterator[Import]:
    """Every import statement of ``module``, at module level and inside functions, relative
    imports resolved; ``from x import y`` gives ``x.y``."""
    for node in _walk_runtime(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module.name, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                yield Import(module.name, node.lineno, source if alias.name == "*" else f"{source}.{alias.name}")


def _owner(target: str, modules: dict[str, Module]) -> str | None:
    """The package that owns the first private part of ``target`` ("compute.query" for
    "compute.query._null.gene_bins"); None when ``target`` names nothing private."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if i and _is_private(part):
            parent = ".".join(parts[:i])
            mod = modules.get(parent)
            # a private name inside a plain module (compute.errors._x) belongs to that module's package
            return parent if mod is None or mod.is_package else mod.package
    return None


def _inside(module: Module, package: str) -> bool:
    return module.package == package or module.package.startswith(package + ".")


def private_imports(modules: dict[str, Module]) -> list[str]:
    """'module:line imports target' for each import of another package's private module or name."""
    tops = {name.split(".")[0] for name in modules}
    out = []
    for mod in modules.values():
        for imp in imports(mod):
            if imp.target.split(".")[0] not in tops:
                continue
            owner = _owner(imp.target, modules)
            if owner is not None and not _inside(mod, owner):
                out.append(f"{mod.name}:{imp.line} imports {imp.target} (private to {owner})")
    return out


def _top_package(mod: Module) -> str:
    """The package a module's private names are shared within: its package one level below the
    top ("compute.query" for compute/query/_run.py and compute/query/sub/x.py), or the top-level
    package for its own modules ("compute" for compute/manifest.py)."""
    return ".".join(mod.package.split(".")[:2])


def _defined_private_names(modules: dict[str, Module]) -> dict[str, set[str]]:
    """{package (``_top_package``): private names its modules define}: functions, classes, module
    and class attributes, and attributes its own methods set on ``self`` / ``cls`` (or through
    ``object.__setattr__(self, "_x", ...)``)."""
    out: dict[str, set[str]] = {}
    for mod in modules.values():
        names = out.setdefault(_top_package(mod), set())
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _is_private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _is_private(node.id):
                names.add(node.id)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_private(node.attr)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
            elif (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[0], ast.Name)
                  and node.args[0].id in ("self", "cls") and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)):
                names.add(node.args[1].value)  # object.__setattr__(self, "_x", ...) in a frozen dataclass
            elif isinstance(node, ast.alias) and _is_private((node.asname or node.name).split(".")[-1]):
                names.add((node.asname or node.name).split(".")[-1])
    return out


def private_attribute_uses(modules: dict[str, Module]) -> list[str]:
    """'module:line obj._name' for each use of a private attribute on something other than
    ``self`` / ``cls`` that the module's own package does not define (so it belongs to an object
    of another package: ``atlas._store(...)``, ``atlas._cache``, ``setattr(atlas, "_x", ...)``)."""
    defined = _defined_private_names(modules)
    out = []
    for mod in modules.values():
        own = defined.get(_top_package(mod), set())
        for node in _walk_runtime(mod.tree):
            name = target = None
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                name, target = node.attr, node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "hasattr")
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                  and _is_private(node.args[1].value)):
                name, target = node.args[1].value, node.args[0]
            if name is None or name in ALLOWED_PRIVATE:
                continue
            if isinstance(target, ast.Name) and target.id in ("self", "cls"):
                continue
            if isinstance(target, ast.Call) and isinstance(target.func, ast.Name) and target.func.id == "super":
                continue
            if name in own:
                continue
            out.append(f"{mod.name}:{node.lineno} {ast.unparse(target)}.{name}")
    return out


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """{module: the project modules it imports}: ``from pkg import name`` is an edge to
    ``pkg.name`` when that is a module, else to ``pkg``."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for mod in modules.values():
        for imp in imports(mod):
            target = imp.target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != mod.name:
                graph[mod.name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected
    component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_cycle_in(graph, set(comp)) for comp in components]


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError("a strongly connected component without a cycle")


# -- the project -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project() -> dict[str, Module]:
    return read_modules(REPO)


def test_no_module_imports_another_packages_private_module(project):
    bad = private_imports(project)
    assert not bad, "imports of another package's private module or name (export it from the package's __init__):\n" + "\n".join(bad)


def test_no_module_uses_a_private_attribute_of_another_packages_object(project):
    bad = private_attribute_uses(project)
    assert not bad, "private attributes of another package's objects (add a public accessor):\n" + "\n".join(bad)


def test_no_import_cycles(project):
    cycles = import_cycles(import_graph(project))
    assert not cycles, "import cycles (module-level and function-level imports):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_app_module_stays_small():
    n = len((REPO / "dashboard" / "app.py").read_text(encoding="utf-8").splitlines())
    assert n <= MAX_APP_LINES, f"dashboard/app.py has {n} lines; at most {MAX_APP_LINES}: move views, layout or callbacks out"


def test_the_dashboard_never_reaches_into_compute(project):
    """The dashboard imports only what compute's packages export (their __init__ files)."""
    for mod in (m for name, m in project.items() if name.startswith("dashboard")):
        for imp in imports(mod):
            if imp.target.startswith("compute."):
                assert not any(_is_private(p) for p in imp.target.split(".")), f"{mod.name}:{imp.line} imports {imp.target}"


# which packages a package may import from (itself always): the floors, bottom first
FLOOR_RULES = {
    # gene symbols and gene-list resolution: the bottom floor, used by ingest, atlas and query
    "compute.genes": {"compute.errors"},
    # the on-disk format: reading, writing, verifying; never the query that computes over it
    "compute.atlas": {"compute.errors", "compute.files", "compute.genes"},
}


def _imported_packages(modules: dict[str, Module], package: str) -> dict[str, list[str]]:
    """{project package (two levels: "compute.query") imported by ``package``'s modules: 'module:line'}."""
    tops = {name.split(".")[0] for name in modules}
    out: dict[str, list[str]] = {}
    for mod in modules.values():
        if mod.name != package and not _inside(mod, package):  # a package, or a plain module (compute.files)
            continue
        for imp in imports(mod):
            parts = imp.target.split(".")
            if parts[0] not in tops:
                continue
            target = ".".join(parts[:2]) if len(parts) > 1 and f"{parts[0]}.{parts[1]}" in modules else parts[0]
            if target != package and not target.startswith(package + ".") and target != parts[0]:
                out.setdefault(target, []).append(f"{mod.name}:{imp.line}")
    return out


def floor_violations(modules: dict[str, Module], rules: dict[str, set[str]]) -> list[str]:
    """'package imports other (where)' for each import a package's floor rule does not allow."""
    out = []
    for package, allowed in rules.items():
        for target, where in sorted(_imported_packages(modules, package).items()):
            if target not in allowed:
                out.append(f"{package} imports {target} ({', '.join(where)})")
    return out


def test_each_floor_imports_only_the_floors_below_it(project):
    bad = floor_violations(project, FLOOR_RULES)
    assert not bad, "imports against the floors (compute.atlas never imports compute.query):\n" + "\n".join(bad)


# what the stages below the query never import: the query, the build that drives them, the dashboard
BELOW_THE_QUERY = ("compute.errors", "compute.files", "compute.genes", "compute.manifest", "compute.vocabulary", "compute.census",
                   "compute.ingest", "compute.model", "compute.attribution", "compute.embedding", "compute.atlas")


def test_the_stages_below_the_query_never_import_it_or_the_build(project):
    imported = {pkg: _imported_packages(project, pkg) for pkg in BELOW_THE_QUERY}
    bad = [f"{pkg} imports {target} ({', '.join(where)})" for pkg, targets in imported.items() for target, where in sorted(targets.items())
           if target in ("compute.query", "compute.build") or target.split(".")[0] == "dashboard"]
    assert not bad, "imports from above (pass what is needed in, or move it down to compute.genes):\n" + "\n".join(bad)


# folders (and files) whose functions stay short enough to read at once: the build's stages, the
# callbacks, the command line
SHORT_FUNCTION_FOLDERS = ("compute/build", "dashboard/callbacks", "compute/__main__.py")
MAX_FUNCTION_LINES = 80


def long_functions(root: Path, folders=SHORT_FUNCTION_FOLDERS, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'path:line name (n lines)' for each function (nested ones too) over ``limit`` lines in ``folders``."""
    out = []
    for folder in folders:
        base = root / folder
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > limit:
                    rel = path.relative_to(root).as_posix()
                    out.append(f"{rel}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    return out


def test_the_build_and_the_callbacks_have_no_long_function():
    bad = long_functions(REPO)
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(bad)


def _members(cls: ast.ClassDef) -> set[str]:
    """The names a class defines: methods, properties, class attributes, and ``self.x`` set in its methods."""
    out = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
              and node.value.id == "self"):
            out.add(node.attr)
    return out


def _class(modules: dict[str, Module], module: str, name: str) -> ast.ClassDef:
    return next(n for n in modules[module].tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def test_the_atlas_has_every_member_the_query_contract_names(project):
    """compute.query states what it needs from an atlas (AtlasView); compute.atlas.Atlas provides it."""
    contract = _members(_class(project, "compute.query._contract", "AtlasView"))
    missing = sorted(contract - _members(_class(project, "compute.atlas._read", "Atlas")))
    assert contract and not missing, f"Atlas lacks what compute.query.AtlasView names: {', '.join(missing)}"



# one name per results tab: views/<tab>.py (with its layout, <tab>_tab), callbacks/<tab>.py and, where
# the tab draws figures, figures/<tab>.py, so a reader finds a tab's code by the value in the URL; the
# other modules there are shared, by name
SHARED_VIEWS = {"__init__", "components", "controls", "filters", "nothing_to_rank", "results"}
SHARED_CALLBACKS = {"__init__", "controls", "export", "link", "presenter", "query", "render", "wiring"}
SHARED_FIGURES = {"__init__", "common"}
# tabs drawn with the whole result by callbacks/render.py (one callback, one request): no callbacks of their own
NO_OWN_CALLBACKS = {"genes"}


def layout_tabs(layout: Path) -> list[str]:
    """The tab values of the page shell's ``TABS = {value: label, ...}`` (read with ``ast``)."""
    for node in ast.parse(layout.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "TABS" for t in node.targets):
            return [ast.literal_eval(k) for k in node.value.keys]
    raise AssertionError(f"{layout} defines no TABS dict")


def tab_module_problems(package: Path, tabs: list[str], shared_views=SHARED_VIEWS, shared_callbacks=SHARED_CALLBACKS,
                        no_callbacks=NO_OWN_CALLBACKS, shared_figures=SHARED_FIGURES) -> list[str]:
    """What breaks 'one name per tab' under ``package`` (the dashboard): a tab without its view
    module or that module's ``<tab>_tab``, a tab without its callbacks module (unless in
    ``no_callbacks``), and a view, callbacks or figures module named after neither a tab nor a
    shared part (a tab needs no figures module: not every tab draws one there)."""
    out = []
    for tab in tabs:
        view = package / "views" / f"{tab}.py"
        if not view.is_file():
            out.append(f"tab '{tab}': no views/{tab}.py")
        elif not any(isinstance(n, ast.FunctionDef) and n.name == f"{tab}_tab" for n in ast.parse(view.read_text(encoding="utf-8")).body):
            out.append(f"tab '{tab}': views/{tab}.py defines no {tab}_tab (its layout)")
        if tab not in no_callbacks and not (package / "callbacks" / f"{tab}.py").is_file():
            out.append(f"tab '{tab}': no callbacks/{tab}.py")
    for folder, shared in (("views", shared_views), ("callbacks", shared_callbacks), ("figures", shared_figures)):
        for path in sorted((package / folder).glob("*.py")):
            if path.stem not in tabs and path.stem not in shared:
                out.append(f"{folder}/{path.name}: named after no tab ({', '.join(tabs)}) and not a shared module")
    return out


def test_each_tab_has_one_name_for_its_view_and_callbacks_modules():
    tabs = layout_tabs(REPO / "dashboard" / "layout.py")
    assert tabs == ["diseases", "studies", "cells", "genes", "cell_genes", "modules"]
    bad = tab_module_problems(REPO / "dashboard", tabs)
    assert not bad, "a tab's modules are named by its value (views/<tab>.py, callbacks/<tab>.py, figures/<tab>.py):\n" + "\n".join(bad)

# -- the checks fail where they should -------------------------------------------------------------
def _tree(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return read_modules(root, packages=("pkg", "app"))


def test_the_private_import_check_fails_on_a_private_module_of_another_package(tmp_path):
    modules = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/query/__init__.py": "from pkg.query._null import draws\n",
        "pkg/query/_null.py": "def draws(): ...\n", "pkg/query/_run.py": "from pkg.query import _null\nfrom ._null import draws\n",
        "pkg/modules.py": "from pkg.query._null import draws\n",
        "app/__init__.py": "", "app/view.py": "def f():\n    from pkg.query import _null\n    import pkg.query._run\n",
        "app/ok.py": "from pkg.query import draws\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.query._null import draws\n",
    })
    assert sorted(private_imports(modules)) == [
        "app.view:2 imports pkg.query._null (private to pkg.query)",
        "app.view:3 imports pkg.query._run (private to pkg.query)",
        "pkg.modules:1 imports pkg.query._null.draws (private to pkg.query)",
    ]


def test_the_private_attribute_check_fails_on_another_packages_private_attribute(tmp_path):
    modules = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/atlas/__init__.py": "",
        "pkg/atlas/_read.py": ("class Atlas:\n    def _store(self, s):\n        return self._cache\n"
                               "    def __init__(self):\n        self._cache = {}\n"),
        "pkg/atlas/_write.py": "def f(atlas):\n    return atlas._store(1), atlas._cache\n",  # same package: fine
        "pkg/query/__init__.py": "",
        "pkg/query/_run.py": ("def run(atlas, t):\n    s = atlas._store(1)\n    atlas._pinned = 3\n"
                              "    setattr(atlas, '_pinned', 4)\n    return t._replace(a=1), s\n"),
        "pkg/build.py": "def build(atlas):\n    return atlas._store(2)\n",  # the top package's own module: not atlas's package
        "app/__init__.py": "", "app/data.py": "def f(atlas):\n    return getattr(atlas, '_cache', None)\n",
    })
    assert sorted(private_attribute_uses(modules)) == sorted([
        "pkg.query._run:2 atlas._store", "pkg.query._run:3 atlas._pinned", "pkg.query._run:4 atlas._pinned",
        "pkg.build:2 atlas._store", "app.data:2 atlas._cache"])


def test_the_floor_check_fails_on_an_import_from_above(tmp_path):
    modules = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/errors.py": "", "pkg/genes/__init__.py": "from pkg.errors import E\n",
        "pkg/query/__init__.py": "from pkg.genes import g\n", "pkg/atlas/__init__.py": "from pkg.genes import g\n",
        "pkg/atlas/_read.py": "def f():\n    from pkg.query import run\n",
        "app/__init__.py": "",
    })
    rules = {"pkg.genes": {"pkg.errors"}, "pkg.atlas": {"pkg.errors", "pkg.genes"}}
    assert floor_violations(modules, rules) == ["pkg.atlas imports pkg.query (pkg.atlas._read:2)"]


def test_the_long_function_check_finds_a_long_nested_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(80))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "stages.py").write_text(f"def outer():\n    def inner():\n{body}\n    return inner\n\ndef short():\n    pass\n")
    assert long_functions(tmp_path, folders=("pkg",)) == ["pkg/stages.py:1 outer (83 lines)", "pkg/stages.py:2 inner (81 lines)"]


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    modules = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "def f():\n    from pkg.c import g\n",
        "pkg/c.py": "from . import a\ndef g(): ...\n",
        "app/__init__.py": "", "app/api.py": "def register():\n    from app.app import known\n",
        "app/app.py": "from app import api\ndef known(): ...\n",
        "app/fine.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.app import known\n",
    })
    assert sorted(import_cycles(import_graph(modules))) == [["app.api", "app.app", "app.api"], ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_the_tab_name_check_fails_on_a_tab_under_another_name(tmp_path):
    files = {"layout.py": "TABS = {'genes': 'Genes', 'cell_genes': 'Genes in a cell type', 'cells': 'Cells'}\n",
             "views/genes.py": "def genes_tab(): ...\n", "views/genes_tab.py": "def cell_genes_tab(): ...\n",
             "views/cells.py": "def layout(): ...\n", "views/results.py": "",
             "callbacks/celltype_genes.py": "", "callbacks/cells.py": "", "callbacks/render.py": "",
             "figures/common.py": "", "figures/genes.py": "", "figures/umap.py": ""}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    tabs = layout_tabs(tmp_path / "layout.py")
    assert tabs == ["genes", "cell_genes", "cells"]
    assert tab_module_problems(tmp_path, tabs, shared_views={"results"}, shared_callbacks={"render"}, no_callbacks={"genes"},
                               shared_figures={"common"}) == [
        "tab 'cell_genes': no views/cell_genes.py", "tab 'cell_genes': no callbacks/cell_genes.py",
        "tab 'cells': views/cells.py defines no cells_tab (its layout)",
        "views/genes_tab.py: named after no tab (genes, cell_genes, cells) and not a shared module",
        "callbacks/celltype_genes.py: named after no tab (genes, cell_genes, cells) and not a shared module",
        "figures/umap.py: named after no tab (genes, cell_genes, cells) and not a shared module"]
