#!/usr/bin/env python3
"""Check with SimpleITK that an inference block keeps world positions (used by tests/it/infer.rs).

  inference_geometry_check.py BLOCK.nii.gz SOURCE.nii.gz [PAD]

For every voxel of BLOCK (e.g. real_a), SimpleITK maps its index to a physical point and that
point to a continuous index of SOURCE (e.g. cropped_cta). Voxels that land on a SOURCE voxel
must hold the same value; voxels outside SOURCE must hold PAD (default -1024). Prints a JSON
summary: {"compared", "padded", "mismatches", "max_index_error", "same_spacing",
"same_direction"}.
"""
import json, sys

import numpy as np
import SimpleITK as sitk


def main(block_path, source_path, pad=-1024.0):
    block, source = sitk.ReadImage(block_path), sitk.ReadImage(source_path)
    b = sitk.GetArrayFromImage(block)  # (z, y, x)
    s = sitk.GetArrayFromImage(source)
    size = source.GetSize()
    compared = padded = mismatches = 0
    max_err = 0.0
    for z in range(b.shape[0]):
        for y in range(b.shape[1]):
            for x in range(b.shape[2]):
                p = block.TransformIndexToPhysicalPoint((x, y, z))
                c = np.array(source.TransformPhysicalPointToContinuousIndex(p))
                r = np.round(c)
                max_err = max(max_err, float(np.abs(c - r).max()))
                i = [int(v) for v in r]
                inside = all(0 <= i[a] < size[a] for a in range(3))
                if inside:
                    compared += 1
                    mismatches += int(b[z, y, x] != s[i[2], i[1], i[0]])
                else:
                    padded += 1
                    mismatches += int(b[z, y, x] != pad)
    print(json.dumps({
        "compared": compared, "padded": padded, "mismatches": mismatches, "max_index_error": max_err,
        "same_spacing": bool(np.allclose(block.GetSpacing(), source.GetSpacing(), atol=1e-6)),
        "same_direction": bool(np.allclose(block.GetDirection(), source.GetDirection(), atol=1e-6)),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(float(v) for v in sys.argv[3:4]))
