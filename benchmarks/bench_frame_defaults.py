"""Every pixel-level method with its defaults, as a new user runs it: `labelfree fit --method M
--data <bundled synthetic set>:train --eval <same>:test`, one process each; wall seconds from
the command's start to its end (data generation, training, evaluation, report), beside the
10-minute budget a CPU run should fit in (issue: `fse` used to take ~48 minutes).

    python benchmarks/bench_frame_defaults.py [--methods fse,dense,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

RUNS = {
    "fse": "synthetic-faces",
    "dense": "synthetic-faces",
    "dense-sym": "synthetic-faces",
    "evc": "synthetic-faces",
    "cpfs": "synthetic-sprites",
    "deepmatching": "synthetic-sprites",
}
BUDGET_S = 600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(RUNS))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods.split(","):
            data = RUNS[name]
            cmd = [sys.executable, "-m", "labelfree.cli", "fit", "--method", name]
            cmd += ["--data", f"{data}:train", "--eval", f"{data}:test"]
            cmd += ["--out", str(Path(tmp) / name)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            sec = time.perf_counter() - t0
            log = Path(tmp) / name / "log.jsonl"
            train_s = 0.0
            if log.exists():
                import json

                recs = [json.loads(line) for line in log.read_text().splitlines() if line]
                train_s = sum(r.get("seconds", 0.0) for r in recs)
            rows.append(
                {
                    "method": name,
                    "data": data,
                    "exit": proc.returncode,
                    "training s": round(train_s, 1),
                    "total s": round(sec, 1),
                    "total / 600 s": round(sec / BUDGET_S, 3),
                }
            )
            print(f"  {rows[-1]}", flush=True)
            if proc.returncode:
                print(proc.stderr[-2000:], flush=True)
    print_table(
        rows,
        ["method", "data", "exit", "training s", "total s", "total / 600 s"],
        "Pixel-level methods with their defaults, one `labelfree fit ... --eval` each",
    )


if __name__ == "__main__":
    main()
