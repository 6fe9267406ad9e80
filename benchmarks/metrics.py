"""What Prometheus counting costs a delivery: the metric calls of one successful delivery, timed in a loop.

    python -m benchmarks.metrics [--deliveries 20000] [--multiprocess]

A successful delivery records its queue wait, its run time and its end-to-end
time and counts one success. Compare the microseconds per delivery with the
pool processes' CPU per job in ``benchmarks.throughput``'s drain (about 2 ms).
``--multiprocess`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a temporary folder), as a
prefork worker runs with it: each value is then written to a memory-mapped file.
No database or broker is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--multiprocess", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if options.multiprocess:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        from critical_path.observability import metrics

        def delivery() -> None:
            metrics.observe("queue_wait", "shop.effects.sync_crm", "default", 0.003)
            metrics.observe("run", "shop.effects.sync_crm", "default", 0.0004)
            metrics.count("succeeded", "shop.effects.sync_crm", "default")
            metrics.observe("end_to_end", "shop.effects.sync_crm", "default", 0.01)

        delivery()  # registers the metrics
        started = time.perf_counter()
        for _ in range(options.deliveries):
            delivery()
        per_delivery = (time.perf_counter() - started) / options.deliveries * 1e6
    mode = "multiprocess" if options.multiprocess else "single process"
    print(f"{mode}: {per_delivery:.1f} µs of metric calls per delivery ({options.deliveries:,} deliveries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
