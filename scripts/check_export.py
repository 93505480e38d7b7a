"""Checks a generator exported by `cta2mbf export --format safetensors`: loads it into the
reference PyTorch layout with load_state_dict(strict=True), runs it on a CTA and compares
the result with cta2mbf's prediction of the same CTA (`cta2mbf infer --input --output`).

usage: python scripts/check_export.py EXPORTED.safetensors CTA.nii.gz CTA2MBF_FAKE.nii.gz train|eval
Prints the architecture read from the file and the relative L2 error; exits 1 above 1e-4.
(needs: pip install torch nibabel safetensors)
"""
import json
import math
import os
import sys

import nibabel as nib
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_generator import ResnetGenerator  # noqa: E402

path, cta_path, fake_path, mode = sys.argv[1:5]
sd = load_file(path)
with safe_open(path, "pt") as f:
    settings = json.loads((f.metadata() or {}).get("cta2mbf.settings", "null") or "null")
ngf = sd["model.0.weight"].shape[0]
n_blocks = len({k.split(".")[1] for k in sd if ".conv_block." in k})
norm = "batch" if "model.1.weight" in sd else "instance"
up = 12 + n_blocks
upsample = "transposed" if f"model.{up}.weight" in sd else "trilinear"
g = ResnetGenerator(ngf, n_blocks, norm, upsample)
g.load_state_dict(sd, strict=True)
print(f"loaded strict: ngf {ngf}, {n_blocks} blocks, {norm} norm, {upsample}; settings {settings}")

im = settings["intensity"] if settings else {"src_offset": 0, "src_scale": 1, "dst_offset": 0, "dst_scale": 1}
pad = settings["pad_value"] if settings else -1024.0
cta = nib.load(cta_path).get_fdata().astype(np.float32)
shape = cta.shape
padded = [int(math.ceil(n / 8) * 8) for n in shape]
x = np.full(padded, pad, np.float32)
x[: shape[0], : shape[1], : shape[2]] = cta
x = (x - im["src_offset"]) / im["src_scale"]
g.train(mode == "train")
with torch.no_grad():
    y = g(torch.from_numpy(x)[None, None])[0, 0].numpy()
y = y[: shape[0], : shape[1], : shape[2]] * im["dst_scale"] + im["dst_offset"]
ours = nib.load(fake_path).get_fdata().astype(np.float32)
err = float(np.linalg.norm(ours - y) / np.linalg.norm(y))
print(f"{mode} mode: relative L2 error {err:.3e} (PyTorch mean {y.mean():.3f}, cta2mbf mean {ours.mean():.3f})")
sys.exit(0 if err < 1e-4 else 1)
