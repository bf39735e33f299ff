"""plantml-train: train a model from Hydra configs (``plantml-train --help``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from plantml.cli.common import quiet_libraries, user_errors


@hydra.main(config_path="pkg://plantml.configs", config_name="train", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> float | None:
    quiet_libraries()
    from plantml.training import train

    metrics = train(cfg)
    monitor = cfg.task.get("monitor")
    value = metrics.get(monitor) if monitor else None
    return float(value) if isinstance(value, int | float) else None  # for sweepers


if __name__ == "__main__":
    main()
