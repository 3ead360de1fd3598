"""What WAL checkpoints cost the event loop: the group-commit store alone, in process.

Usage (from the repository root; ``PYTHONPATH`` picks the code measured)::

    python bench/checkpoint.py [--load telemetry|register] [--rows 200000] [--backstop N]

One ``SqliteStore`` with group commit, as the server opens it, in a temporary folder, fed as
the server's loop feeds it: ``--group`` writes then ``commit()``, over and over.

* ``telemetry``: ``--group`` points per commit over ``--series`` series (the notification
  phase of ``server_load.py``: 1000 observed clients), ``--rows`` points in all;
* ``register``: ``--group`` registrations per commit (a Register storm), ``--rows`` in all.

Figures (one JSON line): the wall time of each ``commit()`` on the calling thread (p50, p99,
p99.9, max: a checkpoint run inside a commit is a stall of every request in flight), the
calling thread's CPU per row (``time.thread_time``) and the process's (``process_time``: the
checkpoint thread's work included), the largest WAL file seen and the file at the end, and the
checkpoint thread's passes when there is one. ``--backstop`` / ``--thread-pages`` override the
store's bounds (a subclass); ``--no-thread`` runs the loop's autocheckpoint alone;
``--warm-rows`` stores that many points first, unmeasured (the WAL file grown to its bound, as
in a server that has run a while).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # after PYTHONPATH: that is the code measured

from lwm2m_runtime.address import Address  # noqa: E402
from lwm2m_server.core.registration import Registration  # noqa: E402
from lwm2m_server.core.telemetry import TelemetryPoint  # noqa: E402
from lwm2m_server.store.sqlite import SqliteStore  # noqa: E402
from object_models.types import ResourceType  # noqa: E402


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if args.backstop is not None:
        attrs["GROUP_CHECKPOINT_PAGES"] = args.backstop
        attrs["FALLBACK_CHECKPOINT_PAGES"] = args.backstop
    if args.thread_pages is not None:
        attrs["THREAD_CHECKPOINT_PAGES"] = args.thread_pages
    store_class = type("Store", (SqliteStore,), attrs)
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-") as folder:
        path = Path(folder) / "db.sqlite"
        store = store_class(path)
        if args.no_thread:
            store._new_checkpointer = lambda *a, **k: _NoThread()  # type: ignore[method-assign]
        store.enable_group_commit()
        wal = Path(f"{path}-wal")
        for batch in range(args.warm_rows // args.group):  # unmeasured: the WAL grown first
            store.append_points(
                [
                    TelemetryPoint(f"warm-{i}", "/3/0/9", "battery", batch, 1.0, ResourceType.FLOAT)
                    for i in range(args.group)
                ]
            )
            assert store.commit()
        text = "1 " * 60
        commits: list[float] = []
        largest = 0
        done = 0
        t0, p0 = time.thread_time(), time.process_time()
        batch = 0
        while done < args.rows:
            n = min(args.group, args.rows - done)
            if args.load == "telemetry":
                store.append_points(
                    [
                        TelemetryPoint(
                            f"dev-{(done + i) % args.series}",
                            "/3303/0/5700",
                            "sensorValue",
                            1000 * batch + i,
                            float(i),
                            ResourceType.FLOAT,
                        )
                        for i in range(n)
                    ]
                )
            else:
                for i in range(n):
                    k = done + i
                    store.put_registration(
                        Registration(
                            registration_id=f"r{k:08x}{text[:8]}",
                            endpoint=f"urn:dev:{k:08d}",
                            address=Address(f"127.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}", 5683),
                            lifetime=86400,
                        )
                    )
            w0 = time.perf_counter()
            ok = store.commit()
            commits.append(time.perf_counter() - w0)
            assert ok
            done += n
            batch += 1
            if batch % 8 == 0:
                largest = max(largest, wal.stat().st_size)
        largest = max(largest, wal.stat().st_size)
        checkpointer = getattr(store, "checkpointer", None)
        cpu_thread, cpu_process = time.thread_time() - t0, time.process_time() - p0
        page = int(store.conn.execute("PRAGMA page_size").fetchone()[0])
        result = {
            "bench": "checkpoint",
            "load": args.load,
            "rows": done,
            "group": args.group,
            "autocheckpoint": store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
            "thread_pages": getattr(checkpointer, "pages", None),
            "thread_passes": getattr(checkpointer, "passes", None),
            "commit_ms": {
                q: round(quantile(sorted(commits), float(q)) * 1000, 2)
                for q in ("0.5", "0.99", "0.999")
            }
            | {"max": round(max(commits) * 1000, 2)},
            "loop_cpu_us_per_row": round(cpu_thread / done * 1e6, 2),
            "process_cpu_us_per_row": round(cpu_process / done * 1e6, 2),
            "wal_largest_mib": round(largest / 2**20, 1),
            "wal_largest_pages": largest // (page + 24),
            "wal_end_mib": round(wal.stat().st_size / 2**20, 1),
        }
        store.close()
        return result


class _NoThread:
    def start(self) -> bool:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/checkpoint.py")
    parser.add_argument("--load", choices=["telemetry", "register"], default="telemetry")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--group", type=int, default=64)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--backstop", type=int)
    parser.add_argument("--thread-pages", type=int)
    parser.add_argument("--no-thread", action="store_true")
    parser.add_argument(
        "--warm-rows", type=int, default=0, help="telemetry rows stored first, not measured"
    )
    print(json.dumps(run(parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
