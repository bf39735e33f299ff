"""What the Hydra entry points share: readable errors instead of tracebacks."""

from __future__ import annotations

import functools
import logging
import os
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


def pin_run_dir(argv: list[str]) -> list[str]:
    """``paths.output_dir=X`` on the command line also moves Hydra's run folder there, so
    that ``train.log`` and ``.hydra/`` land beside the run's outputs (``hydra.run.dir``
    given explicitly wins)."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("paths.output_dir=")]
    if given and not any(a.startswith("hydra.run.dir=") for a in argv):
        return [*argv, f"hydra.run.dir={given[-1]}"]
    return argv


def user_errors(func):
    """Print a :class:`PlantMLError` as one line and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PlantMLError as exc:
            log.error("%s", exc)
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper
