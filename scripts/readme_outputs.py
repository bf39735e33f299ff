"""Regenerate the README's quick-start output from the current code.

Runs the default job exactly as ``make train`` does (``plantml-train``, W&B off) in a
temporary folder, takes the results it prints (the tables through the line naming the
outputs folder) and writes them between the README's ``<!-- quickstart-output -->``
markers. The run is seeded, so the block changes only when the code or data generator does.

    .venv/bin/python scripts/readme_outputs.py            # rewrite README.md
    .venv/bin/python scripts/readme_outputs.py --print    # show the block, change nothing
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- quickstart-output -->", "<!-- /quickstart-output -->"


def results_block(stdout: str) -> str:
    """The results as printed: from the results table's title to the 'outputs in' line."""
    lines = stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if re.search(r": results\s*$", line))
    last = next(i for i in range(len(lines) - 1, -1, -1) if "outputs in" in lines[i])
    block = [line.rstrip() for line in lines[first : last + 1]]
    block[-1] = re.sub(
        r"outputs in \S+", "outputs in outputs/synthetic_failure/runs/<time>", block[-1]
    )
    return "\n".join(block)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--print", action="store_true", help="print the block only")
    args = parser.parse_args()
    tool = Path(sys.executable).parent / "plantml-train"
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "140", "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [str(tool), "callbacks.progress_bar.refresh_rate=0", f"paths.output_dir={tmp}/run"],
            cwd=tmp,
            capture_output=True,
            text=True,
            env=env,
        )
    if proc.returncode != 0:
        sys.exit(f"plantml-train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    block = results_block(proc.stdout)
    if args.print:
        print(block)
        return
    readme = REPO / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n```\n{block}\n```\n{END}{tail}")
    print(f"README.md: quick-start output updated ({len(block.splitlines())} lines)")


if __name__ == "__main__":
    main()
