"""What the Hydra entry points share: readable errors instead of tracebacks."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings

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


def run_command(parser, argv, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run an argparse tool: ``args.func(args)``; a user error is one ``error:`` line, exit 2.

    ``errors`` are further exception types to report that way (besides
    :class:`PlantMLError` and ``OSError``), e.g. the edge runtime's own errors.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (PlantMLError, OSError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
