"""OmegaConf resolvers the configs use; registered once, before any config is composed.

- ``${path_stem:${data.path}}``: a readable name from a file path or glob
  (``plant/pumps_2024*.parquet`` -> ``pumps_2024``), for run names of your own data.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from omegaconf import OmegaConf


def path_stem(path) -> str:
    """The file (or folder) name of ``path`` without suffixes and glob characters."""
    text = str(path or "data")
    parts = [p for p in PurePath(text).parts if not re.fullmatch(r"[*?\[\]]+(\.\w+)*", p)]
    name = (parts[-1] if parts else "data").split(".")[0]
    name = re.sub(r"[*?\[\]]", "", name).strip("_-") or (parts[-2] if len(parts) > 1 else "data")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"


def register() -> None:
    """Register plantml's resolvers (a second call changes nothing)."""
    if not OmegaConf.has_resolver("path_stem"):
        OmegaConf.register_new_resolver("path_stem", path_stem)


register()
