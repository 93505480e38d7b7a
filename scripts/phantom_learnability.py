"""How much of a cohort's myocardial MBF simple CTA features predict on held-out cases: the
yardstick for what a generator trained on the same cases could learn.

usage: python scripts/phantom_learnability.py ROOT/5.mbf_myocardium HELD_ID[,HELD_ID...]

Prints, inside the myocardium (cropped_mbf_mask), on the held-out cases:
- the MAE of predicting the training mean (the issue's baseline);
- the MAE when each held-out case's own mean is known (what the level alone is worth);
- the MAE of least-squares fits, on the training cases, of MBF on a few CTA features:
  `rel`  local myocardium HU (Gaussian-weighted mean of voxels in [20, 180] HU) minus the
         case's median myocardium HU, /10 (perfusion defects are darker);
  `myo`  Gaussian-smoothed myocardium indicator (wall-edge partial volume);
  `ratio` (median myocardium HU - 40) / (99.5th-percentile HU - 40) x 10, one value per case
         (enhancement relative to the blood pool tracks the patient's flow level);
  `cta`, `cta_s`  the CTA clipped to [-200, 500] HU /100, raw and smoothed.
and a ridge fit (lambda 1) of MBF on each voxel's 3^3 or 5^3 CTA neighbourhood plus the blood level.
(needs: pip install nibabel scipy numpy)
"""
import glob
import os
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

root, held = sys.argv[1], sys.argv[2].split(",")
cases = {}
for d in sorted(glob.glob(os.path.join(root, "*", ""))):
    pid = os.path.basename(os.path.dirname(d))
    load = lambda n: nib.load(os.path.join(d, n)).get_fdata()
    cases[pid] = (load("cropped_cta.nii.gz"), load("cropped_mbf.nii.gz"), load("cropped_mbf_mask.nii.gz") > 0)
train = [p for p in cases if p not in held]
target = lambda p: cases[p][1][cases[p][2]]
mean = np.concatenate([target(p) for p in train]).mean()
mae = lambda pred_of: float(np.mean([np.abs(pred_of(p) - target(p)).mean() for p in held]))
print(f"{len(train)} training, {len(held)} held-out cases; training mean {mean:.2f}")
print(f"baseline (training mean):          {mae(lambda p: mean):.2f}")
print(f"each held-out case's own mean:      {mae(lambda p: target(p).mean()):.2f}")


def features(a, sigma):
    myo = ((a > 20) & (a < 180)).astype(float)
    local = ndi.gaussian_filter(a * myo, sigma) / (ndi.gaussian_filter(myo, sigma) + 1e-3)
    med = np.median(a[myo > 0])
    blood = np.percentile(a, 99.5)
    clipped = a.clip(-200, 500) / 100
    return {
        "one": np.ones_like(a),
        "rel": (local - med) / 10,
        "myo": ndi.gaussian_filter(myo, sigma),
        "ratio": np.full_like(a, (med - 40) / (blood - 40) * 10),
        "cta": clipped,
        "cta_s": ndi.gaussian_filter(clipped, sigma),
    }


for sigma in (0.5, 1.5, 4.0):
    feats = {p: features(cases[p][0], sigma) for p in cases}
    for names in (["one", "rel"], ["one", "ratio"], ["one", "rel", "myo"], ["one", "cta", "myo", "cta_s"], ["one", "rel", "myo", "ratio"]):
        X = lambda p: np.stack([feats[p][n] for n in names], -1)[cases[p][2]]
        w = np.linalg.lstsq(np.concatenate([X(p) for p in train]), np.concatenate([target(p) for p in train]), rcond=None)[0]
        print(f"sigma {sigma}: fit on {'+'.join(names[1:]):<16} held-out MAE {mae(lambda p: X(p) @ w):.2f}")


def patch(p, r=2):
    """Each myocardium voxel's (2r+1)^3 CTA neighbourhood (clipped to [-200, 500] HU, /100),
    plus the case's 99.5th-percentile HU /100 (the blood pool) and a constant."""
    a = cases[p][0]
    padded = np.pad(a.clip(-200, 500) / 100, r, constant_values=-2.0)
    idx = np.argwhere(cases[p][2]) + r
    cols = [padded[idx[:, 0] + i, idx[:, 1] + j, idx[:, 2] + k]
            for i in range(-r, r + 1) for j in range(-r, r + 1) for k in range(-r, r + 1)]
    cols += [np.full(len(idx), np.percentile(a, 99.5) / 100), np.ones(len(idx))]
    return np.stack(cols, 1)


for r in (1, 2):
    X = np.concatenate([patch(p, r) for p in train])
    w = np.linalg.solve(X.T @ X + np.eye(X.shape[1]), X.T @ np.concatenate([target(p) for p in train]))
    print(f"ridge fit on the {2 * r + 1}^3 neighbourhood + blood level: held-out MAE {mae(lambda p: patch(p, r) @ w):.2f}")
