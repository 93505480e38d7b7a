#!/usr/bin/env python3
"""Largest face-connected component per label with SimpleITK, the reference for
`cta2mbf connected` (tests/it/connected_sitk.rs, scripts/connected_bench.py).

For each listed label: ConnectedComponent(label mask, fullyConnected=False), then
RelabelComponent (components sorted by size, ties by first appearance), and only component 1
is kept; other voxels of that label become 0. Unlisted labels are copied.

Usage:
  connected_crosscheck.py IN.nii.gz OUT.nii.gz [LABELS]      LABELS like 1,2,3,4,6 (default)
  connected_crosscheck.py --time IN.nii.gz OUT.nii.gz [LABELS] also print the seconds of the
                                                               component step (no file I/O)
Needs `pip install SimpleITK`.
"""
import sys
import time

import SimpleITK as sitk


def keep_largest(mask, labels):
    out = sitk.Image(mask)
    for label in labels:
        binary = mask == label
        components = sitk.RelabelComponent(sitk.ConnectedComponent(binary, False), sortByObjectSize=True)
        drop = sitk.And(binary, components != 1)
        out = sitk.Mask(out, sitk.Not(drop))
    return out


def main(argv):
    timed = argv and argv[0] == "--time"
    if timed:
        argv = argv[1:]
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    labels = [int(v) for v in argv[2].split(",")] if len(argv) == 3 else [1, 2, 3, 4, 6]
    mask = sitk.Cast(sitk.ReadImage(argv[0]), sitk.sitkUInt8)
    start = time.perf_counter()
    out = keep_largest(mask, labels)
    seconds = time.perf_counter() - start
    sitk.WriteImage(out, argv[1])
    if timed:
        print(f"{seconds:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
