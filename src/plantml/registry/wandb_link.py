"""The W&B side of a version: which tracked run it came from, and linking the bundle there.

Offline-safe: nothing here needs a network or an API key unless a link is asked for and W&B
is online; otherwise the link is skipped with a note saying how to do it later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_RUN_DIR = re.compile(r"^(offline-run|run)-\d{8}_\d{6}-(?P<id>[a-z0-9]+)$")


def wandb_info(config: Mapping | None, run_dir: Path | None) -> dict[str, Any] | None:
    """The W&B run of a training run folder (from its config and ``wandb/``), or None."""
    logger = (config or {}).get("logger") or {}
    wb = logger.get("wandb") if isinstance(logger, Mapping) else None
    if not wb:
        return None
    info: dict[str, Any] = {
        "project": wb.get("project"),
        "entity": wb.get("entity"),
        "name": wb.get("name"),
        "run_id": None,
        "mode": None,
        "run_path": None,
        "checkpoint_artifact": None,
    }
    folder = run_dir / "wandb" if run_dir else None
    runs = (
        sorted(p for p in folder.iterdir() if _RUN_DIR.match(p.name))
        if folder and folder.is_dir()
        else []
    )
    if runs:
        match = _RUN_DIR.match(runs[-1].name)
        info["run_id"] = match["id"]
        info["mode"] = "offline" if match[1] == "offline-run" else "online"
        info["run_path"] = str(runs[-1])
        if wb.get("log_best_checkpoint", True):
            info["checkpoint_artifact"] = f"model-{match['id']}:best"
    return info


def _offline_reason(info: Mapping) -> str | None:
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    if info.get("mode") == "offline":
        return (
            "the training run was logged offline (sync it first: wandb sync "
            + str(info.get("run_path"))
            + ")"
        )
    if not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").is_file():
        return "no W&B API key (WANDB_API_KEY or `wandb login`)"
    return None


def link_bundle(info: Mapping | None, bundle_dir: Path, model: str, number: int) -> dict[str, Any]:
    """Log the bundle as a ``bundle`` artifact of the training run; skipped with a note offline."""
    if not info or not info.get("run_id"):
        return {"linked": False, "note": "the training run was not tracked in W&B"}
    reason = _offline_reason(info)
    if reason:
        return {
            "linked": False,
            "note": f"W&B link skipped: {reason}; run `plantml-registry wandb-link {model}:{number}` when online",
        }
    import wandb

    run = wandb.init(
        project=info.get("project"), entity=info.get("entity"), id=info["run_id"], resume="must"
    )
    artifact = wandb.Artifact(
        f"bundle-{model}", type="bundle", metadata={"registry_version": number}
    )
    artifact.add_dir(str(bundle_dir))
    logged = run.log_artifact(artifact, aliases=[f"registry-v{number}"])
    run.finish()
    return {
        "linked": True,
        "artifact": f"bundle-{model}:registry-v{number}",
        "id": getattr(logged, "id", None),
    }
