"""plantml-export ckpt_path=CKPT export=RECIPE: turn a checkpoint into an edge bundle."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from plantml.cli.common import pin_run_dir, quiet_libraries, user_errors


@hydra.main(config_path="pkg://plantml.configs", config_name="export", version_base="1.3")
@user_errors
def _main(cfg: DictConfig) -> None:
    quiet_libraries()
    from plantml.export.recipe import run_export
    from plantml.export.report import print_summary

    print_summary(run_export(cfg))


def main() -> None:
    sys.argv[1:] = pin_run_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
