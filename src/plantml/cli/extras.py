"""Start a tool that needs an optional extra, or say in one line what to install.

The base install (``pip install plantml``: numpy and onnxruntime) runs
``plantml-edge`` only. The training tools need ``pip install 'plantml[train]'``;
started without it, they print one line naming the extra and the missing
packages and exit with status 2 instead of an import traceback.

This module is on the path of every console script, so it imports nothing
outside the standard library.
"""

from __future__ import annotations

import importlib
import re
import sys
from importlib import metadata

DIST = "plantml"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def requirements(extra: str, dist: str = DIST) -> list[str]:
    """Names of the distributions that ``dist[extra]`` adds to the base install.

    Read from the installed metadata (``Requires-Dist: torch==2.11.0; extra == "train"``);
    an extra that names ``dist`` itself (``plantml[train,parquet]``) brings in those
    extras too. Only the ``extra == ...`` marker is read. Empty when ``dist`` is not
    installed (running from a source tree on ``PYTHONPATH``).
    """
    try:
        required = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return []
    names: list[str] = []
    seen = {extra}
    todo = [extra]
    while todo:
        wanted = todo.pop()
        for line in required:
            requirement, _, marker = line.partition(";")
            found = _EXTRA.search(marker)
            if not found or found.group(1) != wanted:
                continue
            name_match = _NAME.match(requirement)
            if name_match is None:
                continue
            name, extras = name_match.group(1), name_match.group(2) or ""
            if name.lower() == dist.lower():
                more = [e.strip() for e in extras.split(",") if e.strip() not in seen]
                seen.update(more)
                todo.extend(more)
            elif name not in names:
                names.append(name)
    return names


def missing(extra: str, dist: str = DIST) -> list[str]:
    """The distributions of ``dist[extra]`` that are not installed."""
    absent = []
    for name in requirements(extra, dist):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    return absent


def _fail(tool: str, extra: str, absent: list[str]) -> None:
    print(
        f"error: {tool} needs the {extra} extra: pip install 'plantml[{extra}]' "
        f"(not installed: {', '.join(absent)})",
        file=sys.stderr,
    )
    sys.exit(2)


def launch(tool: str, extra: str, target: str):
    """Run ``target`` (``"module:function"``) if ``extra`` is installed; else one line, exit 2."""
    absent = missing(extra, DIST)
    if absent:
        _fail(tool, extra, absent)
    module, _, function = target.partition(":")
    try:
        entry = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as exc:  # a source tree without metadata, or a broken install
        if (exc.name or "").split(".")[0] == DIST:
            raise
        _fail(tool, extra, [exc.name or str(exc)])
    return entry()


def train():
    return launch("plantml-train", "train", "plantml.cli.train:main")


def evaluate():
    return launch("plantml-eval", "train", "plantml.cli.evaluate:main")


def cv():
    return launch("plantml-cv", "train", "plantml.cli.cv:main")


def tune():
    return launch("plantml-tune", "train", "plantml.cli.tune:main")


def export():
    return launch("plantml-export", "train", "plantml.cli.export:main")


def data():
    return launch("plantml-data", "train", "plantml.cli.data:main")


def agent():
    return launch("plantml-agent", "agent", "plantml.agent.cli:main")
