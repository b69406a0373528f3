"""A query job forked while another thread imports a module it needs must not hang (issue 33).

The load test's one failure: a job forked while a request thread imported statsmodels for its
first disease evidence waited forever on that module's import lock (the importing thread does not
exist in the child). dashboard.forksafe imports every lazily imported module of the serving code
before the server forks its first job."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from dashboard.forksafe import lazy_imports, preload
from tests.conftest import REPO

_FORK_DURING_IMPORT = textwrap.dedent("""
    import os, sys, threading, time
    if sys.argv[1] == "preload":
        from dashboard import forksafe
        forksafe.preload()
    # a request thread runs its first disease evidence: statsmodels is imported (about a second)
    threading.Thread(target=lambda: __import__("statsmodels.stats.meta_analysis"), daemon=True).start()
    time.sleep(0.05)
    pid = os.fork()  # a query job starts meanwhile
    if pid == 0:
        from compute.query import meta_analyse, donor_table  # the job's own evidence, as in run_ranking
        import statsmodels.stats.meta_analysis, scipy.stats
        os._exit(0)
    deadline = time.time() + 30
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print("job finished"); sys.exit(0)
        time.sleep(0.1)
    os.kill(pid, 9)
    print("job hung"); sys.exit(1)
""")


def test_a_job_forked_while_a_thread_imports_what_it_needs_finishes():
    proc = subprocess.run([sys.executable, "-c", _FORK_DURING_IMPORT, "preload"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "job finished" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_the_lazy_imports_of_the_serving_code_are_found_and_all_importable():
    found = lazy_imports()
    # the one that hung the load test, a compiled kernel loaded on first use, and a relative import's target
    assert {"statsmodels.stats.meta_analysis", "compute.query._null_kernel", "scipy.stats"} <= set(found)
    assert not {"selenium", "tiledb", "torch"} & set(found)  # developer tools and build importers are not served
    assert preload() == []


def test_lazy_imports_reads_function_level_imports_only(tmp_path):
    pkg = tmp_path / "dashboard"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "views.py").write_text(textwrap.dedent("""
        import json
        def draw():
            import csv
            from email import message
            from . import sibling
            from .other import thing
            return csv
        class A:
            def method(self):
                from xml.dom import minidom
    """))
    assert lazy_imports(tmp_path) == ["csv", "dashboard", "dashboard.other", "email", "email.message", "xml.dom", "xml.dom.minidom"]
