#!/usr/bin/env python3
"""Time `cta2mbf connected` against SimpleITK on one mask (e.g. a 512x512x300 phantom mask).

Both keep the largest face-connected component of labels 1,2,3,4,6. Reported: the component
step alone (SimpleITK's ConnectedComponent + RelabelComponent per label, as
scripts/connected_crosscheck.py does it; cta2mbf's own timing line) and the whole command
(read, compute, write .nii.gz), median of REPEATS runs; then checks that both outputs agree.

Usage: connected_bench.py MASK.nii.gz [REPEATS]    (needs `pip install SimpleITK` and a
built binary: cargo build --release)
Example:
  cargo run --release -- phantom --out /tmp/big --cases 1 --size 512,512,300
  python3 scripts/connected_bench.py /tmp/big/3.sorted_mask/*/CTA/CTA_MASK.nii.gz 3
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "..", "target", "release", "cta2mbf")


def timed(cmd):
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    mask = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) == 3 else 3
    size = sitk.ReadImage(mask).GetSize()
    tmp = tempfile.mkdtemp(prefix="connected_bench_")
    ours_out, sitk_out = os.path.join(tmp, "ours.nii.gz"), os.path.join(tmp, "sitk.nii.gz")
    rows = {"cta2mbf": ([], []), "SimpleITK": ([], [])}
    for _ in range(repeats):
        total, out = timed([BIN, "connected", "--in", mask, "--out", ours_out])
        core = float(re.search(r"components in ([0-9.]+) s", out).group(1))
        rows["cta2mbf"][0].append(core)
        rows["cta2mbf"][1].append(total)
        total, out = timed([sys.executable, os.path.join(HERE, "connected_crosscheck.py"), "--time", mask, sitk_out])
        rows["SimpleITK"][0].append(float(out.strip()))
        rows["SimpleITK"][1].append(total)
    print(f"mask {mask}: {size[0]}x{size[1]}x{size[2]}, labels 1,2,3,4,6, median of {repeats}, "
          f"{os.cpu_count()} cores, SimpleITK {sitk.Version.VersionString()}")
    print("| tool | components | whole command (read, compute, write) |")
    print("|---|---|---|")
    for name, (core, total) in rows.items():
        print(f"| {name} | {statistics.median(core):.3f} s | {statistics.median(total):.3f} s |")
    a = sitk.GetArrayFromImage(sitk.ReadImage(ours_out))
    b = sitk.GetArrayFromImage(sitk.ReadImage(sitk_out))
    print(f"outputs identical: {bool(np.array_equal(a, b))}")


if __name__ == "__main__":
    main()
