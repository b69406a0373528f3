"""Every module the serving code imports inside a function, imported before the first job forks.

A query job is a forked copy of a server process (dashboard.app). Python takes a lock per module
while it imports one; a job forked while another thread of the server is importing module X
inherits X's lock held by a thread that does not exist in the child, and the first time the job
needs X it waits forever. It happened in the load test: a request thread imported
``statsmodels.stats.meta_analysis`` for its first disease evidence while a job forked; the job
hung in ``meta_analyse`` until the page gave up (120 s). A module already imported takes no lock,
so :func:`preload` imports them all once, in the server's main thread, before it serves.

The modules are found, not listed: every ``import`` inside a function of the serving packages
(SERVING), so a lazy import added later is covered without anyone remembering this file.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
from pathlib import Path

__all__ = ["SERVING", "lazy_imports", "preload"]

_log = logging.getLogger("sigatlas.serving")
_ROOT = Path(__file__).resolve().parent.parent

# the packages and modules a server process runs (paths under the project root)
SERVING = ("dashboard", "compute/atlas", "compute/query", "compute/genes", "compute/reference.py",
           "compute/errors.py", "compute/files.py")
# never run by a server: developer tools and the build's importers (tiledb must not be loaded
# into a process that forks: it warns that its threads deadlock a forked child)
_NOT_SERVING = ("dashboard/devtools", "dashboard/proxy.py", "compute/atlas/_import_signature.py")


def _files(root: Path) -> list[Path]:
    files = []
    for entry in SERVING:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    skip = [root / p for p in _NOT_SERVING]
    return [f for f in files if not any(f == s or s in f.parents for s in skip)]


def lazy_imports(root: str | Path | None = None) -> list[str]:
    """The modules imported inside a function anywhere in the serving packages under ``root``
    (the project by default), sorted; relative imports resolved against their package, and
    ``from X import y`` counted as module ``X.y`` too when y is a module."""
    root = Path(root) if root is not None else _ROOT
    found = set()
    names = set()
    for path in _files(root):
        package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
        if path.name == "__init__.py":
            package = ".".join(path.relative_to(root).parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found.update(alias.name for alias in sub.names)
                elif isinstance(sub, ast.ImportFrom):
                    if sub.level == 0:
                        module = sub.module
                    else:
                        base = package.split(".")[: len(package.split(".")) - (sub.level - 1)]
                        module = ".".join(base + ([sub.module] if sub.module else []))
                    found.add(module)
                    names.update(f"{module}.{alias.name}" for alias in sub.names)
    for name in sorted(names):
        try:
            if importlib.util.find_spec(name) is not None:
                found.add(name)
        except (ImportError, ValueError, AttributeError):
            pass  # a name, not a module (or its package is missing here)
    return sorted(found)


_DONE: dict[Path, list[str]] = {}  # root -> the modules not imported: the scan runs once a process


def preload(root: str | Path | None = None) -> list[str]:
    """Import every module of :func:`lazy_imports` now (once per process and ``root``: a second
    app in the same process finds them imported); returns those that could not be imported
    (logged: an optional package missing here only matters to the function that needs it)."""
    key = Path(root) if root is not None else _ROOT
    if key in _DONE:
        return list(_DONE[key])
    missing = []
    for name in lazy_imports(root):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(name)
            _log.info("not preloaded (%s): %s", exc, name)
    _DONE[key] = missing
    return list(missing)
