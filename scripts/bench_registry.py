"""Model registry benchmark: audit-chain verification and bundle registration times.

Measures, in a fresh registry in a temporary folder (SQLite; ``--url`` for PostgreSQL):

- ``audit verify`` over ``--entries`` signed, hash-chained audit entries: the whole chain
  (hashes, links and Ed25519 signatures) and hashes and links only; median of ``--repeats``;
- the time to append them (one transaction per entry, as the registry writes them);
- ``register`` of a bundle (read and hash the bundle, its export report and training run,
  store the files, sign, record, audit), median of ``--registrations``, for a bundle built
  like the tests' (``tests/registry_helpers.make_export``) or a real one (``--bundle DIR``,
  registered once per copy under different model names).

Reproduce (the numbers in the README's registry section, 2-core CPU), from the repo root:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_registry.py --entries 100000 --repeats 3 --registrations 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _append(reg, n: int) -> float:
    from plantml.registry import audit
    from plantml.registry.db import write_transaction
    from plantml.registry.timefmt import iso

    start = time.perf_counter()
    done = 0
    while done < n:
        with write_transaction(reg.engine) as conn:
            for _ in range(min(1000, n - done)):
                audit.append(
                    conn,
                    reg.signer,
                    iso(reg.clock()),
                    "bench",
                    "bench.entry",
                    f"bench:{done}",
                    {"i": done},
                    {"i": done + 1},
                )
                done += 1
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--registrations", type=int, default=20)
    parser.add_argument("--bundle", help="a real bundle folder (export/<name>/bundle)")
    parser.add_argument("--url", help="SQLAlchemy URL of an empty database (default SQLite)")
    args = parser.parse_args(argv)

    from tests.registry_helpers import make_export, make_registry

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reg, tokens = make_registry(root / "home", args.url)
        bundles = (
            [Path(args.bundle)] * args.registrations
            if args.bundle
            else [make_export(root / f"e{i}", seed=i) for i in range(args.registrations)]
        )
        times = []
        for i, bundle in enumerate(bundles):
            start = time.perf_counter()
            reg.register(tokens["dev"], bundle, f"bench-{i}" if args.bundle else "bench")
            times.append(time.perf_counter() - start)
        print(
            f"register: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
            f"over {len(times)} bundles"
        )
        existing = reg.audit_head()[0]
        seconds = _append(reg, args.entries - existing)
        print(
            f"append: {args.entries - existing} entries in {seconds:.1f} s "
            f"({(args.entries - existing) / seconds:,.0f} entries/s)"
        )
        for signatures in (True, False):
            runs = []
            for _ in range(args.repeats):
                report = reg.verify_audit(signatures=signatures)
                assert report.ok and report.entries == args.entries, report.message()
                runs.append(report.seconds)
            what = "hashes, links and signatures" if signatures else "hashes and links only"
            print(
                f"audit verify ({what}): {args.entries:,} entries, median {statistics.median(runs):.2f} s "
                f"({args.entries / statistics.median(runs):,.0f} entries/s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
