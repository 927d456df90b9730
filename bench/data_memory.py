"""Peak memory and teacher throughput of the data stages (data, teacher, label) vs pool size.

    .venv/bin/python bench/data_memory.py [--sizes 10000 60000]

Each size runs in a fresh process with an empty embedding cache, so the teacher really runs:
the demo's request and 5 examples per class, Fashion-MNIST train limited to N images. The
embeddings stream to disk in chunks and are read back in chunks; what stays in memory is the
pool's pixels (28x28 bytes each), the projected embeddings (128 floats each) and the label
arrays. Prints peak RSS (ru_maxrss of the child), the teacher's images/s and stage times.
Target: peak RSS at 60k <= 1.2x that at 10k.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from agent.data import load_pool, native_shape
from agent.demo import demo_spec
from agent.pipeline import create_run, execute
from agent.plan import GenerateStep, default_input, offline_plan
from agent.runs import RunStore

root, n = Path(sys.argv[1]), int(sys.argv[2])
store = RunStore(root / "runs")
spec = demo_spec(root, pool_limit=n)
plan = offline_plan(spec, default_input(spec, *native_shape(load_pool(spec))), generate=GenerateStep(mode="off"))
run = create_run(spec, plan, store)
execute(run, store, None, show_bars=False, until="label")
print(json.dumps({"pool": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "teacher_images_per_second": run.result("teacher")["images_per_second"],
                  "seconds": {s: run.result(s)["seconds"] for s in ("data", "teacher", "label")},
                  "label_accuracy": run.result("label")["teacher_label_accuracy"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 60000])
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, NANOFACTORY_CACHE=str(Path(tmp) / "cache"))
            out = subprocess.run([sys.executable, "-c", CHILD, tmp, str(n)], env=env, capture_output=True, text=True, check=False,
                                 cwd=Path(__file__).resolve().parent.parent)
            if out.returncode:
                sys.exit(f"pool {n}: the child failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"pool {n:>7,}: peak RSS {r['peak_rss_mib']:7.0f} MiB, teacher {r['teacher_images_per_second']:6.0f} "
                  f"img/s, stages {r['seconds']}, label accuracy {r['label_accuracy']:.4f}", flush=True)
    if len(rows) > 1:
        print(f"peak RSS {rows[-1]['pool']:,} / {rows[0]['pool']:,}: "
              f"{rows[-1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
