"""plantml-eval ckpt_path=CKPT [overrides]: score a checkpoint with its run's config.

Overrides of the run's config (``data.split=test``, ``data.root=...``,
``trainer=gpu``) are taken off the command line before Hydra sees it: they
apply to the stored run config, not to eval.yaml.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from plantml.cli.common import pin_run_dir, quiet_libraries, user_errors

EVAL_KEYS = ("ckpt_path", "run_name", "paths.", "hydra.", "hydra/", "gate", "bootstrap")
_run_overrides: list[str] = []


@hydra.main(config_path="pkg://plantml.configs", config_name="eval", version_base="1.3")
@user_errors
def _main(cfg: DictConfig) -> None:
    quiet_libraries()
    from plantml.evaluation.checkpoint import evaluate_checkpoint

    metrics = evaluate_checkpoint(cfg, _run_overrides)
    gate = metrics.get("gate")
    if gate and not gate["passed"]:
        from plantml.evaluation.gate import GateResult

        for line in GateResult(**gate).summary_lines():
            print(line, file=sys.stderr)
        sys.exit(1)


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(arguments for eval.yaml and Hydra, overrides of the stored run config)."""
    own, run = [], []
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+~")
        if arg.startswith("-") or "=" not in arg or key.startswith(EVAL_KEYS):
            own.append(arg)
        else:
            run.append(arg)
    return own, run


def main() -> None:
    own, run = split_overrides(sys.argv[1:])
    _run_overrides[:] = run
    sys.argv[1:] = pin_run_dir(own)
    _main()


if __name__ == "__main__":
    main()
