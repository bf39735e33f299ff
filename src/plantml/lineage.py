"""Where a run came from: code version, data fingerprint, package versions, seed."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "plantml",
    "torch",
    "torchaudio",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "onnx",
    "onnxruntime",
    "optuna",
    "wandb",
)


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(path: Path | None = None) -> dict:
    """Commit and dirty flag of the checkout holding plantml's source (None if not a checkout)."""
    path = path or Path(__file__).resolve().parent
    commit = _git("rev-parse", "HEAD", cwd=path)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=path)
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def lineage(seed: int, data_fingerprint: str, data_summary: dict | None = None) -> dict:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "seed": seed,
        "data_fingerprint": data_fingerprint,
        "data": data_summary or {},
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "command": sys.argv,
    }
