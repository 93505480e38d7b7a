#!/usr/bin/env python3
"""Dice per label between predicted and true label maps of a cohort, for every patient
found in both folders.

Usage:
  seg_dice.py PRED_DIR TRUTH_DIR FILE [CLASSES]
FILE is the path inside each patient folder, e.g. CTA/CTA_MASK_connected.nii.gz (two
3.sorted_mask folders) or cropped_mask.nii.gz (two 5.mbf_myocardium folders). Volumes of
different extents (crops of different boxes) are compared on the union of their boxes, placed
by their origins (same spacing and direction required). Prints a Markdown table: Dice of
labels 1..CLASSES-1 per patient, their mean, and the mean over patients.
Needs `pip install nibabel numpy`.
"""
import os
import sys

import nibabel as nib
import numpy as np


def load(path):
    img = nib.load(path)
    return np.asarray(img.dataobj).round().astype(np.int16), img.affine


def on_common_grid(a, aff_a, b, aff_b):
    if not np.allclose(aff_a[:3, :3], aff_b[:3, :3], atol=1e-4):
        sys.exit("spacing/direction differ")
    # Voxel offset of b's first voxel in a's index space.
    off = np.linalg.solve(aff_a[:3, :3], aff_b[:3, 3] - aff_a[:3, 3])
    if not np.allclose(off, off.round(), atol=1e-2):
        sys.exit(f"grids are not aligned: offset {off}")
    off = off.round().astype(int)
    lo = np.minimum(0, off)
    hi = np.maximum(a.shape, off + np.array(b.shape))
    big_a = np.zeros(hi - lo, np.int16)
    big_b = np.zeros(hi - lo, np.int16)
    sa, sb = -lo, off - lo
    big_a[sa[0]:sa[0] + a.shape[0], sa[1]:sa[1] + a.shape[1], sa[2]:sa[2] + a.shape[2]] = a
    big_b[sb[0]:sb[0] + b.shape[0], sb[1]:sb[1] + b.shape[1], sb[2]:sb[2] + b.shape[2]] = b
    return big_a, big_b


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    pred_dir, truth_dir, file = sys.argv[1:4]
    classes = int(sys.argv[4]) if len(sys.argv) == 5 else 8
    pids = sorted(p for p in os.listdir(pred_dir) if os.path.isfile(os.path.join(pred_dir, p, file)) and os.path.isfile(os.path.join(truth_dir, p, file)))
    if not pids:
        sys.exit("no patient has the file in both folders")
    labels = list(range(1, classes))
    print("| patient | " + " | ".join(str(l) for l in labels) + " | mean |")
    print("|---" * (len(labels) + 2) + "|")
    table = []
    for pid in pids:
        p, ap = load(os.path.join(pred_dir, pid, file))
        t, at = load(os.path.join(truth_dir, pid, file))
        p, t = on_common_grid(p, ap, t, at)
        row = []
        for l in labels:
            n = (p == l).sum() + (t == l).sum()
            row.append(2.0 * ((p == l) & (t == l)).sum() / n if n else np.nan)
        table.append(row)
        print(f"| {pid} | " + " | ".join(f"{d:.4f}" for d in row) + f" | {np.nanmean(row):.4f} |")
    mean = np.nanmean(np.array(table), axis=0)
    print("| **mean** | " + " | ".join(f"{d:.4f}" for d in mean) + f" | {np.nanmean(mean):.4f} |")


if __name__ == "__main__":
    main()
