"""Evaluate an ONNX model written by `cta2mbf export --format onnx` in float64 (a small
interpreter of the operators those graphs use, on PyTorch), and compare onnxruntime's float32
output and cta2mbf's with it: which of the two float32 computations is the less accurate.

usage: python3 scripts/onnx_float64.py MODEL.onnx CTA.nii[.gz] REFERENCE
REFERENCE as for scripts/onnx_check.py: cta2mbf's output for CTA (NIfTI, or a raw float32
dump of the first output without its batch axis). Prints the three relative L2 errors.
(needs: pip install onnx onnxruntime nibabel numpy torch)
"""
import sys

import nibabel as nib
import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper

BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}


def channel(t):
    return t.reshape(1, -1, 1, 1, 1)


def evaluate(node, env):
    a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
    i = [env[k] if k else None for k in node.input]
    op = node.op_type
    if op == "Conv":
        return F.conv3d(i[0], i[1], i[2] if len(i) > 2 else None, stride=a["strides"], padding=a["pads"][:3])
    if op == "ConvTranspose":
        return F.conv_transpose3d(i[0], i[1], i[2] if len(i) > 2 else None, stride=a["strides"], padding=a["pads"][:3], output_padding=a["output_padding"])
    if op == "BatchNormalization":
        return (i[0] - channel(i[3])) / torch.sqrt(channel(i[4]) + a["epsilon"]) * channel(i[1]) + channel(i[2])
    if op in BINARY:
        return BINARY[op](i[0], i[1])
    if op == "ReduceMean":
        return i[0].mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
    if op == "Sqrt":
        return torch.sqrt(i[0])
    if op in ("Cast", "Identity"):
        return i[0]
    if op == "Relu":
        return torch.relu(i[0])
    if op == "LeakyRelu":
        return F.leaky_relu(i[0], a["alpha"])
    if op == "Clip":
        return torch.clamp(i[0], float(i[1]), float(i[2]))
    if op == "Shape":
        return torch.tensor(i[0].shape[a.get("start", 0) : a.get("end", None)], dtype=torch.int64)
    if op == "Concat":
        return torch.cat(i, dim=a["axis"])
    if op == "ArgMax":
        return i[0].argmax(dim=a["axis"])
    if op == "Resize":
        mode, coords = a["mode"].decode(), a["coordinate_transformation_mode"].decode()
        if len(i) > 3 and i[3] is not None:
            size = tuple(int(v) for v in i[3][2:])
        else:
            size = tuple(int(n * f) for n, f in zip(i[0].shape[2:], i[2][2:].tolist()))
        if mode == "nearest":
            return F.interpolate(i[0], size=size, mode="nearest")
        return F.interpolate(i[0], size=size, mode="trilinear", align_corners=coords == "align_corners")
    raise SystemExit(f"operator {op} is not interpreted here")


def run(path, x):
    m = onnx.load(path)
    env = {}
    for init in m.graph.initializer:
        t = torch.from_numpy(numpy_helper.to_array(init).copy())
        env[init.name] = t.double() if t.is_floating_point() else t
    env[m.graph.input[0].name] = torch.from_numpy(x).double()
    for node in m.graph.node:
        env[node.output[0]] = evaluate(node, env)
    return env[m.graph.output[0].name].numpy()


def main():
    model, cta, reference = sys.argv[1:4]
    x = nib.load(cta).get_fdata(dtype=np.float32)[None, None]
    exact = run(model, x)[0]
    theirs = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"cta": x})[0][0].astype(np.float64)
    ours = np.fromfile(reference, "<f4") if reference.endswith(".f32") else nib.load(reference).get_fdata(dtype=np.float32)
    ours = ours.reshape(theirs.shape).astype(np.float64)

    def rel(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    print(f"onnxruntime vs float64 {rel(theirs, exact):.2e}, cta2mbf vs float64 {rel(ours, exact):.2e}, onnxruntime vs cta2mbf {rel(theirs, ours):.2e}")


if __name__ == "__main__":
    main()
