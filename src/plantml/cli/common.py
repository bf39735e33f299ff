"""What the Hydra entry points share: readable errors instead of tracebacks."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings

import plantml.resolvers  # noqa: F401  (registered before Hydra composes any config)
from plantml.errors import PlantMLError

log = logging.getLogger("plantml")


def quiet_libraries() -> None:
    """Silence library chatter that says nothing to a plant engineer."""
    os.environ.setdefault("WANDB_SILENT", "true")
    for pattern in (
        ".*does not have many workers.*",
        ".*The number of training batches.*",
        ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def missing_value(exc: Exception) -> str:
    """The message for a config value left at ``???`` (OmegaConf's MissingMandatoryValue)."""
    found = re.search(r"Missing mandatory value: ?([\w.]+)", str(exc))
    key = found.group(1) if found else getattr(exc, "full_key", None) or "a required value"
    return f"{key} is not set; give it on the command line: {key}=..."


def pin_run_dir(argv: list[str]) -> list[str]:
    """``paths.output_dir=X`` on the command line also moves Hydra's run folder there, so
    that ``train.log`` and ``.hydra/`` land beside the run's outputs (``hydra.run.dir``
    given explicitly wins)."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("paths.output_dir=")]
    if given and not any(a.startswith("hydra.run.dir=") for a in argv):
        return [*argv, f"hydra.run.dir={given[-1]}"]
    return argv


def user_errors(func):
    """Print a :class:`PlantMLError` (or a required config value left unset) as one line, exit 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

        try:
            return func(*args, **kwargs)
        except (PlantMLError, MissingMandatoryValue, InterpolationToMissingValueError) as exc:
            message = str(exc) if isinstance(exc, PlantMLError) else missing_value(exc)
            log.error("%s", message)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper
