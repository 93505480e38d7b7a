"""SimpleITK against cta2mbf's registration output.

    python3 scripts/register_crosscheck.py TRANSFORM.tfm FIXED MOVING OURS FILL [POINTS.json]

Reads the ITK transform file that `cta2mbf register` wrote with SimpleITK's ReadTransform,
resamples MOVING onto FIXED's grid with it (linear interpolation, FILL outside) and compares
with OURS (cta2mbf's resampled file). With POINTS.json (a list of [x, y, z] world points and
the mapped points cta2mbf computed, {"points": [...], "mapped": [...]}), also compares
TransformPoint. Prints one JSON object: the transform's class, the largest and mean
absolute voxel difference, the fraction of voxels differing by more than 0.51 (rounding to
integers allows 0.5), and the largest point difference in mm.
"""

import json
import sys

import numpy as np
import SimpleITK as sitk


def main() -> None:
    tfm, fixed_path, moving_path, ours_path, fill = sys.argv[1:6]
    transform = sitk.ReadTransform(tfm)
    fixed = sitk.ReadImage(fixed_path)
    moving = sitk.ReadImage(moving_path, sitk.sitkFloat32)
    theirs = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, float(fill), sitk.sitkFloat32)
    a = sitk.GetArrayFromImage(theirs).astype(np.float64)
    b = sitk.GetArrayFromImage(sitk.ReadImage(ours_path)).astype(np.float64)
    diff = np.abs(a - b)
    out = {
        "class": transform.GetName(),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "fraction_over_half": float((diff > 0.51).mean()),
        "voxels": int(diff.size),
    }
    if len(sys.argv) > 6:
        with open(sys.argv[6]) as f:
            pts = json.load(f)
        worst = 0.0
        for p, q in zip(pts["points"], pts["mapped"]):
            r = transform.TransformPoint([float(v) for v in p])
            worst = max(worst, float(np.linalg.norm(np.subtract(r, q))))
        out["max_point_diff_mm"] = worst
    print(json.dumps(out))


if __name__ == "__main__":
    main()
