"""A writer that dies mid-transaction, for the crash test in tests/test_runs.py.

    python tests/runs_writer.py DB N

saves N runs labelled "committed 0" .. "committed N-1" and prints each id, then saves one more,
labelled "uncommitted", whose transaction never ends: after its rows are written (with a few MB of
maps, so SQLite spills uncommitted pages into the WAL file) it prints "inside" and sleeps until it
is killed.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from attn.runs import RunStore

ENVIRONMENT = {"device": "test CPU", "device_kind": "cpu"}


class HangsInsideWrite(RunStore):
    """A store whose next write stops between its last statement and its COMMIT."""

    hang = False

    def _write(self, work):
        if not self.hang:
            return super()._write(work)

        def work_then_hang(db):
            work(db)
            print("inside", flush=True)
            time.sleep(600)

        return super()._write(work_then_hang)


def main(path: str, n: int) -> None:
    store = HangsInsideWrite(path)
    rng = np.random.default_rng(0)
    for i in range(n):
        run_id = store.save("maps", {"seq": 64 * (i + 1)}, {"latency_ms": float(i)},
                            variant="dense", maps={"values": rng.random((8, 8), np.float32)},
                            environment=ENVIRONMENT, label=f"committed {i}")
        print(run_id, flush=True)
    store.hang = True
    # 4 MB of incompressible floats: more than SQLite's page cache holds
    store.save("maps", {"seq": 1}, {}, maps={"values": rng.random((1024, 1024), np.float32)},
               environment=ENVIRONMENT, label="uncommitted")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
