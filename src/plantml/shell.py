"""Commands printed for the user to run next, written so that they run as printed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def runnable(tool: str) -> str:
    """How to call the entry point ``tool`` from here: its bare name when it is on PATH,
    else its path (``.venv/bin/plantml-train`` from the repository root)."""
    if shutil.which(tool):
        return tool
    path = Path(sys.executable).parent / tool
    if not path.exists():
        return tool
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
