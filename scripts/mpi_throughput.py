#!/usr/bin/env python3
"""Training throughput of `mpirun -np N cta2mbf train` against one process (BENCHMARKS.md).

For each network — the demo's U-Net (ngf 8, 4 levels, 32³ crops) and the reference ResNet
generator at 64³ with ngf 32 — trains on a phantom cohort with no validation, once as a single
process and once under `mpirun -np N`, every process with THREADS threads (RAYON_NUM_THREADS),
and prints samples per second (epochs after the first), the speed-up and the share of rank 0's
epoch spent in collective operations (the all-reduces and the waits for slower ranks), which
cta2mbf prints on each epoch line under MPI.

    python3 scripts/mpi_throughput.py [--ranks 2] [--threads 1] [--epochs 3] [--only demo|g64]

Needs a release build with the `mpi` feature (`cargo build --release --features mpi`) and
Open MPI's `mpirun`.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release" / "cta2mbf"


def networks(cases):
    demo = json.loads((REPO / "configs" / "phantom_demo.json").read_text())
    demo.update(samples_per_volume=4)
    g64 = json.loads((REPO / "configs" / "phantom_small.json").read_text())
    g64.update(crop_size=[64, 64, 64], samples_per_volume=1)
    g64["generator"].update(ngf=32, n_blocks=6)
    return {"demo": (demo, "U-Net ngf 8, 4 levels, 32³"), "g64": (g64, "ResNet generator ngf 32, 6 blocks, 64³")}


def train(cfg, name, data, ckpt, epochs, threads, ranks):
    cfg = dict(cfg, name=name, val_cases=[], n_epochs=epochs, n_epochs_decay=0, workers=1, save_epoch_freq=1000)
    path = ckpt / f"{name}.json"
    path.write_text(json.dumps(cfg))
    cmd = [str(BIN), "train", "--quiet", "--device", "cpu", "--config", str(path), "--data-root", str(data), "--checkpoints-dir", str(ckpt)]
    if ranks > 1:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(ranks)] + cmd
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    lines = [json.loads(l) for l in (ckpt / name / "metrics.jsonl").read_text().splitlines()]
    seconds = [l["seconds"] for l in lines[1:]] or [lines[0]["seconds"]]
    comm = [float(m) for m in re.findall(r"([0-9.]+)s in all-reduce", out.stderr)][1:]
    return sum(seconds) / len(seconds), (sum(comm) / len(comm) if comm else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--only", choices=["demo", "g64"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([str(BIN), "phantom", "--cases", str(a.cases), "--size", "96,96,72", "--seed", "3", "--out", str(tmp / "cohort")], check=True, capture_output=True)
        data = tmp / "cohort" / "5.mbf_myocardium"
        print(f"| network | samples/epoch | 1 process × {a.threads} thread(s) | mpirun -np {a.ranks} × {a.threads} thread(s) | speed-up | rank 0 in collectives |")
        print("|---|---|---|---|---|---|")
        for key, (cfg, title) in networks(a.cases).items():
            if a.only and key != a.only:
                continue
            samples = a.cases * cfg["samples_per_volume"]
            one, _ = train(cfg, f"{key}_1", data, tmp, a.epochs, a.threads, 1)
            many, comm = train(cfg, f"{key}_{a.ranks}", data, tmp, a.epochs, a.threads, a.ranks)
            print(f"| {title} | {samples} | {samples / one:.2f} samples/s | {samples / many:.2f} samples/s | {one / many:.2f}× | {comm:.2f} s of {many:.2f} s ({100 * comm / many:.0f} %) |", flush=True)


if __name__ == "__main__":
    main()
