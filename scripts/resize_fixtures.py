#!/usr/bin/env python3
"""Write tests/fixtures/resize_trilinear.json: inputs and PyTorch's
F.interpolate(mode='trilinear', align_corners=True) outputs, the reference for
cta2mbf::ops::resize_trilinear (tests/it/resize_torch.rs).

Needs torch (`pip install torch`); the fixture is committed, so the tests do not.
Usage: python3 scripts/resize_fixtures.py [OUT.json]
"""
import json
import sys

import torch
import torch.nn.functional as F

# (input shape [b, c, x, y, z], output size [x, y, z]): up, down, mixed, unit axes, size 1 out.
CASES = [
    ([1, 1, 4, 5, 3], [7, 9, 5]),
    ([1, 2, 6, 8, 5], [3, 4, 2]),
    ([2, 1, 5, 3, 7], [9, 2, 4]),
    ([1, 3, 1, 4, 6], [3, 4, 11]),
    ([1, 1, 5, 6, 4], [1, 3, 8]),
    ([1, 1, 12, 10, 8], [17, 7, 20]),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/resize_trilinear.json"
    gen = torch.Generator().manual_seed(20240501)
    cases = []
    for shape, size in CASES:
        x = torch.randn(*shape, generator=gen, dtype=torch.float32)
        y = F.interpolate(x, size=size, mode="trilinear", align_corners=True)
        cases.append({
            "shape": shape,
            "size": size,
            "input": [float(v) for v in x.flatten().tolist()],
            "output": [float(v) for v in y.flatten().tolist()],
        })
    doc = {"torch": torch.__version__, "mode": "trilinear", "align_corners": True, "cases": cases}
    with open(out, "w") as f:
        json.dump(doc, f)
    print(f"wrote {len(cases)} cases to {out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
