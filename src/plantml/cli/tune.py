"""plantml-tune: an Optuna study over plantml-train's training (``plantml-tune --help``).

    plantml-tune                                         # hparams_search follows experiment
    plantml-tune experiment=cmapss_rul tune.n_trials=40  # hparams_search=cmapss_rul
    plantml-tune hparams_search=cmapss_rul_pareto experiment=cmapss_rul
    plantml-tune tune.n_workers=2                        # two processes on one study

Run the same command again to resume; the study folder is
``<paths.log_dir>/tune/<tune.study_name>/``.
"""

from __future__ import annotations

import shlex
import sys

import hydra
from omegaconf import DictConfig

from plantml.cli.common import quiet_libraries, user_errors


@hydra.main(config_path="pkg://plantml.configs", config_name="tune", version_base="1.3")
@user_errors
def _main(cfg: DictConfig) -> None:
    quiet_libraries()
    from hydra.core.hydra_config import HydraConfig

    from plantml.tuning.settings import TuneSetup, train_overrides
    from plantml.tuning.study import run_study

    hydra_cfg = HydraConfig.get()
    config_dirs = [
        source["path"]
        for source in hydra_cfg.runtime.config_sources
        if source["provider"] == "command-line" and source["schema"] == "file"
    ]
    setup = TuneSetup(
        train_overrides=train_overrides(list(hydra_cfg.overrides.task)),
        experiment=hydra_cfg.runtime.choices.get("experiment"),
        config_dirs=config_dirs,
        command=shlex.join(["plantml-tune", *sys.argv[1:]]),
    )
    try:
        run_study(cfg, setup)
    except KeyboardInterrupt:
        sys.exit(130)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
