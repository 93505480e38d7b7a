"""Paired CPU timing of the generator: `cta2mbf bench` against the same network in PyTorch.

    python3 scripts/cpu_vs_torch.py BINARY X,Y,Z NGF [REPEATS] [PAIRS] [TORCH_SCRIPT | unet:LEVELS]

Runs `BINARY bench --size X,Y,Z --ngf NGF --repeats REPEATS --json` and
`python3 TORCH_SCRIPT X Y Z NGF REPEATS` (default `scripts/torch_generator.py`, PyTorch with 2
threads; `unet:LEVELS` compares the U-Net generator instead: `bench --generator unet --levels
LEVELS` against scripts/torch_unet.py) one after the other PAIRS times (A B A B ...), so that a drift of the machine's speed
hits both; each tool's own per-inference and per-step times are read from its output. Prints
the median of each figure, its min and max, and the median of the pair-by-pair ratios
cta2mbf / PyTorch, plus each process's peak resident memory (the OS's accounting of the
finished child, as `/usr/bin/time -v` reports it).
"""

import json
import os
import re
import statistics
import subprocess
import sys


def timed(cmd):
    """Run cmd under /usr/bin/time -f %M; return stdout and its peak RSS in bytes."""
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M"] + cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    kb = int(re.search(r"MAXRSS_KB (\d+)", proc.stderr).group(1))
    return proc.stdout, kb * 1024


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, size, ngf = sys.argv[1], sys.argv[2], sys.argv[3]
    repeats = sys.argv[4] if len(sys.argv) > 4 else "3"
    pairs = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    here = os.path.dirname(os.path.abspath(__file__))
    torch_script = sys.argv[6] if len(sys.argv) > 6 else os.path.join(here, "torch_generator.py")
    bench_extra, torch_extra = [], []
    if torch_script.startswith("unet:"):
        levels = torch_script.split(":", 1)[1]
        torch_script = os.path.join(here, "torch_unet.py")
        bench_extra, torch_extra = ["--generator", "unet", "--levels", levels], ["-", levels]
    x, y, z = size.split(",")
    rows = {"ours_infer": [], "ours_step": [], "torch_infer": [], "torch_step": [], "ours_rss": [], "torch_rss": []}
    for _ in range(pairs):
        out, rss = timed([binary, "bench", "--size", size, "--ngf", ngf, "--repeats", repeats, "--json"] + bench_extra)
        r = json.loads(out)
        rows["ours_infer"].append(r["infer_seconds"])
        rows["ours_step"].append(r["train_step_seconds"])
        rows["ours_rss"].append(rss)
        out, rss = timed(["python3", torch_script, x, y, z, ngf, repeats] + torch_extra)
        m = re.search(r"infer ([\d.]+) s\s+train_step ([\d.]+) s", out)
        rows["torch_infer"].append(float(m.group(1)))
        rows["torch_step"].append(float(m.group(2)))
        rows["torch_rss"].append(rss)

    def fmt(v):
        return f"{statistics.median(v):.3f} s (min {min(v):.3f}, max {max(v):.3f})"

    print(f"size {size} ngf {ngf}, {pairs} pairs, {repeats} timed repetitions per run")
    for what in ("infer", "step"):
        ratios = [a / b for a, b in zip(rows[f"ours_{what}"], rows[f"torch_{what}"])]
        print(f"  {what:5}  cta2mbf {fmt(rows[f'ours_{what}'])}  PyTorch {fmt(rows[f'torch_{what}'])}  ratio (median of pairs) {statistics.median(ratios):.2f}")
    gib = lambda v: f"{statistics.median(v) / 2**30:.2f} GiB"
    print(f"  peak RSS  cta2mbf {gib(rows['ours_rss'])}  PyTorch {gib(rows['torch_rss'])}")


if __name__ == "__main__":
    main()
