"""Judge an ONNX model written by `cta2mbf export --format onnx` with the ONNX project's own
tools: `onnx.checker.check_model(full_check=True)` (structure and strict shape inference), then
onnxruntime (CPU) on a CTA volume, compared with cta2mbf's own output for the same volume.

usage:
  python3 scripts/onnx_check.py MODEL.onnx CTA.nii[.gz] REFERENCE [LABELS.nii[.gz]] [--repeat N] [--threads T]
  python3 scripts/onnx_check.py --cases CASES.json
REFERENCE is a NIfTI (`cta2mbf infer --input CTA --output REFERENCE`) or a raw little-endian
float32 dump (`.f32`) of the first output without its batch axis; LABELS (segmentation) is
`cta2mbf segment --input CTA --output LABELS`, compared with the model's `labels` output.
CASES.json is a list of objects with the keys model, input, reference and optionally labels.
`--repeat N` times N runs after one warm-up (median seconds); `--threads T` sets onnxruntime's
intra-op threads. Prints one JSON object per case: the model's opset, producer, metadata, input
and output shapes (dynamic axes by name), the relative L2 error of the first output, and the
fraction of differing labels.
(needs: pip install onnx onnxruntime nibabel numpy)
"""
import json
import statistics
import sys
import time

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort


def shape_of(value_info):
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.dim_param else d.dim_value for d in dims]


def describe(path):
    onnx.checker.check_model(path, full_check=True)
    m = onnx.load(path)
    return {
        "ir_version": m.ir_version,
        "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
        "producer": f"{m.producer_name} {m.producer_version}",
        "metadata": {p.key: p.value for p in m.metadata_props},
        "inputs": {i.name: shape_of(i) for i in m.graph.input},
        "outputs": {o.name: shape_of(o) for o in m.graph.output},
        "ops": sorted({n.op_type for n in m.graph.node}),
    }


def session(path, threads):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def read_reference(path, shape):
    if path.endswith(".f32"):
        return np.fromfile(path, dtype="<f4").reshape(shape)
    return nib.load(path).get_fdata(dtype=np.float32).reshape(shape)


def check(case, described, threads=0, repeat=0):
    model = case["model"]
    if model not in described:
        described[model] = describe(model)
    out = dict(described[model])
    sess = session(model, threads)
    x = nib.load(case["input"]).get_fdata(dtype=np.float32)[None, None]
    feed = {sess.get_inputs()[0].name: x}
    results = sess.run(None, feed)
    y = results[0][0]
    ref = read_reference(case["reference"], y.shape).astype(np.float64)
    out["case"] = case["input"]
    out["shape"] = list(results[0].shape)
    out["rel_l2"] = float(np.linalg.norm(y.astype(np.float64) - ref) / np.linalg.norm(ref))
    out["max_abs"] = float(np.abs(y - ref).max())
    if case.get("labels"):
        names = [o.name for o in sess.get_outputs()]
        labels = results[names.index("labels")][0]
        ref_labels = np.asarray(nib.load(case["labels"]).dataobj).astype(np.int64)
        out["label_mismatch"] = float(np.mean(labels != ref_labels))
    if repeat:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
        out["seconds"] = statistics.median(times)
        out["threads"] = threads
    return out


def main(argv):
    described = {}
    if argv[:1] == ["--cases"]:
        for case in json.load(open(argv[1])):
            print(json.dumps(check(case, described)))
        return
    opts = {}
    for flag in ("--repeat", "--threads"):
        if flag in argv:
            i = argv.index(flag)
            opts[flag] = int(argv[i + 1])
            del argv[i : i + 2]
    keys = ["model", "input", "reference", "labels"]
    case = dict(zip(keys, argv))
    print(json.dumps(check(case, described, opts.get("--threads", 0), opts.get("--repeat", 0))))


if __name__ == "__main__":
    main(sys.argv[1:])
