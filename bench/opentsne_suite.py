"""Run openTSNE's own test suite against turbotsne's openTSNE namespace.

A temporary folder receives a ``conftest.py`` that only assigns ``sys.modules``
entries (``openTSNE`` and its submodules -> ``turbotsne.opentsne`` and its
submodules), and a copy of the test files from the folder given on the command
line; pytest runs there and the passed / failed / errors / skipped counts are
printed per file. The test files are read at run time and are not part of
this project.

    python bench/opentsne_suite.py /path/to/openTSNE/tests [-k EXPR] [--keep] [-v]
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SUBMODULES = ("affinity", "nearest_neighbors", "initialization", "callbacks", "sklearn", "tsne", "utils",
              "metrics")

SHIM = '''import importlib
import sys

_ns = importlib.import_module("turbotsne.opentsne")
sys.modules["openTSNE"] = _ns
for _name in {submodules!r}:
    sys.modules["openTSNE." + _name] = importlib.import_module("turbotsne.opentsne." + _name)
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", help="the folder of openTSNE's test files (test_*.py)")
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failing test and its error")
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="opentsne_suite_")
    try:
        with open(os.path.join(tmp, "conftest.py"), "w") as f:
            f.write(SHIM.format(submodules=SUBMODULES))
        shutil.copytree(args.tests, os.path.join(tmp, "tests"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyx", "*.so"))
        open(os.path.join(tmp, "tests", "__init__.py"), "a").close()
        report = os.path.join(tmp, "report.xml")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", tmp,
               f"--junitxml={report}", "tests"]
        if args.k:
            cmd += ["-k", args.k]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if not os.path.exists(report):
            print(proc.stdout[-5000:], proc.stderr[-5000:])
            return 1
        counts = collections.defaultdict(collections.Counter)
        failures = []
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("classname", "").split(".")
            file = next((p for p in name if p.startswith("test_")), name[0]) + ".py"
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed", "error": "errors", "skipped": "skipped"}[child.tag]
                    if outcome != "skipped":
                        msg = (child.get("message") or "").splitlines()
                        failures.append(f"{case.get('classname')}::{case.get('name')}: "
                                        f"{msg[0][:200] if msg else ''}")
            counts[file][outcome] += 1
        total = collections.Counter()
        print(f"{'file':28s} {'passed':>7s} {'failed':>7s} {'errors':>7s} {'skipped':>8s}")
        for file in sorted(counts):
            c = counts[file]
            total.update(c)
            print(f"{file:28s} {c['passed']:7d} {c['failed']:7d} {c['errors']:7d} {c['skipped']:8d}")
        n = sum(total.values())
        print(f"{'total':28s} {total['passed']:7d} {total['failed']:7d} {total['errors']:7d} {total['skipped']:8d}"
              f"   ({total['passed']} of {n} passed)")
        if args.verbose:
            print("\n".join(failures))
        return 0
    finally:
        if args.keep:
            print("kept:", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
