#!/usr/bin/env python3
"""Cross-check cta2mbf's NIfTI I/O against SimpleITK and nibabel (used by tests/it/interop.rs).

  nifti_crosscheck.py read OUTDIR FILE...   how SimpleITK and nibabel see each FILE:
      OUTDIR/<i>.json  {"file", "sitk": {size, spacing, origin, direction} | null,
                        "nib": {shape, affine, dtype}}
      OUTDIR/<i>.nib.f32, OUTDIR/<i>.sitk.f32   voxel values (scaling applied) as
      little-endian float32, frames first, then x, y, z with z fastest
  nifti_crosscheck.py write OUTDIR          files written by SimpleITK and by nibabel
      (all datatypes, oblique, qform-only, sform-only, scaled, big-endian); prints their paths
  nifti_crosscheck.py nibabel-data          the NIfTI files shipped in nibabel's test data
"""
import glob, json, os, sys

import nibabel as nib
import numpy as np
import SimpleITK as sitk


def frames_first(arr):
    """(x, y, z, ...) -> (frames, x, y, z), C order, float32."""
    a = np.asarray(arr, dtype=np.float64)
    while a.ndim < 3:
        a = a[..., None]
    a = a.reshape(a.shape[0], a.shape[1], a.shape[2], -1)
    return np.ascontiguousarray(np.transpose(a, (3, 0, 1, 2))).astype('<f4')


def read(outdir, files):
    os.makedirs(outdir, exist_ok=True)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    for i, f in enumerate(files):
        img = nib.load(f)
        rec = {"file": f, "nib": {"shape": list(img.shape), "affine": img.affine.tolist(),
                                  "dtype": str(img.get_data_dtype())}}
        frames_first(img.get_fdata()).tofile(os.path.join(outdir, f"{i}.nib.f32"))
        try:
            s = sitk.ReadImage(f)
            rec["sitk"] = {"size": list(s.GetSize()), "spacing": list(s.GetSpacing()),
                           "origin": list(s.GetOrigin()), "direction": list(s.GetDirection())}
            a = sitk.GetArrayFromImage(s)  # (..., z, y, x)
            a = np.transpose(a, tuple(range(a.ndim - 1, -1, -1)))  # (x, y, z, ...)
            frames_first(a).tofile(os.path.join(outdir, f"{i}.sitk.f32"))
        except RuntimeError:
            rec["sitk"] = None
        with open(os.path.join(outdir, f"{i}.json"), "w") as fh:
            json.dump(rec, fh)


def oblique_affine(spacing, origin, angles):
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ ry @ rx @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def write(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    # SimpleITK writers: oblique direction, non-unit spacing.
    for name, arr in [("sitk_int16_oblique.nii.gz", rng.integers(-1024, 3000, (6, 7, 8)).astype(np.int16)),
                      ("sitk_float32.nii", rng.normal(0, 100, (5, 6, 7)).astype(np.float32)),
                      ("sitk_uint8.nii.gz", rng.integers(0, 8, (4, 5, 6)).astype(np.uint8))]:
        img = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))
        img.SetSpacing((0.7, 1.3, 2.5))
        img.SetOrigin((-101.25, 37.5, -250.125))
        aff = oblique_affine([1, 1, 1], [0, 0, 0], (0.2, -0.3, 0.4))
        img.SetDirection(tuple(aff[:3, :3].flatten()))
        p = os.path.join(outdir, name)
        sitk.WriteImage(img, p)
        paths.append(p)
    # nibabel writers: every read datatype, qform-only, sform-only, scaling, big-endian.
    aff = oblique_affine([0.8, 0.9, 3.0], [12.5, -40.0, 66.0], (-0.1, 0.25, -0.5))
    cases = [("nib_int8.nii.gz", np.int8, -100, 100), ("nib_uint16.nii", np.uint16, 0, 60000),
             ("nib_int32.nii.gz", np.int32, -2**20, 2**20), ("nib_float64.nii", np.float64, None, None),
             ("nib_uint8.nii", np.uint8, 0, 255), ("nib_int16.nii.gz", np.int16, -3000, 3000)]
    for name, dt, lo, hi in cases:
        arr = (rng.normal(0, 1000, (5, 4, 6)) if lo is None else rng.integers(lo, hi, (5, 4, 6))).astype(dt)
        img = nib.Nifti1Image(arr, aff)
        img.header.set_data_dtype(dt)
        p = os.path.join(outdir, name)
        nib.save(img, p)
        paths.append(p)
    def save(img, name):
        p = os.path.join(outdir, name)
        nib.save(img, p)
        paths.append(p)

    arr = rng.integers(-500, 500, (6, 5, 4)).astype(np.int16)
    img = nib.Nifti1Image(arr, aff)
    img.set_sform(None, code=0)
    img.set_qform(aff, code=1)
    save(img, "nib_qform_only.nii.gz")
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(None, code=0)
    img.set_sform(aff, code=2)
    save(img, "nib_sform_only.nii")
    img = nib.Nifti1Image(arr, aff)
    img.header.set_slope_inter(0.5, -1024.0)
    save(img, "nib_scaled_int16.nii.gz")
    hdr = nib.Nifti1Header(endianness='>')
    save(nib.Nifti1Image(rng.normal(0, 10, (4, 4, 3)).astype('>f4'), aff, header=hdr), "nib_bigendian_float32.nii")
    print("\n".join(paths))


def nibabel_data():
    d = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    files = sorted(glob.glob(os.path.join(d, "*.nii")) + glob.glob(os.path.join(d, "*.nii.gz")))
    # CIFTI-2 files are matrices with a NIfTI-2 header, not images: skip them.
    print("\n".join(f for f in files if ".dconn." not in f and ".dscalar." not in f and ".dtseries." not in f))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "read":
        read(sys.argv[2], sys.argv[3:])
    elif cmd == "write":
        write(sys.argv[2])
    elif cmd == "nibabel-data":
        nibabel_data()
    else:
        sys.exit(f"unknown command {cmd}")
