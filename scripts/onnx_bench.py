"""CPU inference time of a generator in onnxruntime against cta2mbf, on the same volume.

usage: python3 scripts/onnx_bench.py BINARY CHECKPOINT CTA.nii.gz PAIRS [THREADS]
For each norm mode it exports CHECKPOINT with `BINARY export --format onnx`, then runs PAIRS
pairs in turn, A B A B: `BINARY infer --input CTA` (the whole command, wall clock) and a fresh
python process that imports onnxruntime, loads the model (THREADS intra-op threads, default 2),
reads CTA, runs it and writes the prediction (wall clock, without the timing loop that
follows), and inside that process the forward pass alone (median of 3 after the first). `BINARY bench` gives cta2mbf's forward pass
alone for the same architecture and size. Prints medians as JSON, with the relative L2 error
between the two predictions.
(needs: pip install onnxruntime nibabel numpy)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import nibabel as nib
import numpy as np

ORT_RUN = r"""
import sys, time, statistics, numpy as np, nibabel as nib, onnxruntime as ort
model, cta, out, threads = sys.argv[1:5]
opts = ort.SessionOptions(); opts.intra_op_num_threads = int(threads)
s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
img = nib.load(cta)
x = img.get_fdata(dtype=np.float32)[None, None]
y = s.run(None, {"cta": x})[0][0, 0]
nib.save(nib.Nifti1Image(y, img.affine), out)
times = []
for _ in range(3):
    t = time.perf_counter(); s.run(None, {"cta": x}); times.append(time.perf_counter() - t)
print(statistics.median(times), sum(times))
"""


def wall(cmd):
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def main():
    binary, checkpoint, cta, pairs = sys.argv[1:5]
    threads = sys.argv[5] if len(sys.argv) > 5 else "2"
    shape = nib.load(cta).shape
    tmp = tempfile.mkdtemp()
    results = {"cta": cta, "shape": list(shape), "threads": int(threads), "modes": {}}
    for mode in ["eval", "train"]:
        model = os.path.join(tmp, f"{mode}.onnx")
        subprocess.run([binary, "export", "--format", "onnx", "--norm-mode", mode, "--checkpoint", checkpoint, "--out", model], check=True, capture_output=True)
        ours, theirs, forward = [], [], []
        a, b = os.path.join(tmp, "a.nii"), os.path.join(tmp, "b.nii")
        for _ in range(int(pairs)):
            ours.append(wall([binary, "infer", "--checkpoint", checkpoint, "--input", cta, "--output", a, "--norm-mode", mode])[0])
            t, out = wall([sys.executable, "-c", ORT_RUN, model, cta, b, threads])
            median, timing_loop = map(float, out.split())
            theirs.append(t - timing_loop)
            forward.append(median)
        ya, yb = nib.load(a).get_fdata(), nib.load(b).get_fdata()
        results["modes"][mode] = {
            "cta2mbf_infer_command_s": statistics.median(ours),
            "onnxruntime_process_s": statistics.median(theirs),
            "onnxruntime_forward_s": statistics.median(forward),
            "rel_l2": float(np.linalg.norm(ya - yb) / np.linalg.norm(ya)),
        }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
