"""plantml-train: train a model from Hydra configs (``plantml-train --help``)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from plantml.cli.common import pin_run_dir, quiet_libraries, user_errors


@hydra.main(config_path="pkg://plantml.configs", config_name="train", version_base="1.3")
@user_errors
def _main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    from plantml.training import train

    metrics = train(cfg)
    monitor = cfg.task.get("monitor")
    value = metrics.get(monitor) if monitor else None
    return float(value) if isinstance(value, int | float) else None  # for sweepers


def main() -> None:
    sys.argv[1:] = pin_run_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
