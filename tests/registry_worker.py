"""One process of the concurrency test: register N bundles and approve each of them.

    python -m tests.registry_worker HOME URL DEV_TOKEN REVIEWER_TOKEN N NAME START_FILE
Waits for START_FILE to exist so that both workers start together; prints the refs it made.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from plantml.registry import Registry
from tests.registry_helpers import make_export


def main(home, url, dev, reviewer, n, name, start) -> None:
    reg = Registry.open(home, None if url == "-" else url)
    bundles = [
        make_export(Path(home).parent / f"{name}-{i}", seed=100 * hash(name) % 997 + i)
        for i in range(int(n))
    ]
    while not Path(start).exists():
        time.sleep(0.01)
    refs = []
    for bundle in bundles:
        ref = reg.register(dev, bundle, "pump")["ref"]
        reg.review(reviewer, ref, "approve", f"by {name}")
        refs.append(ref)
    print(" ".join(refs))


if __name__ == "__main__":
    main(*sys.argv[1:])
