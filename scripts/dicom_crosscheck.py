#!/usr/bin/env python3
"""Cross-check cta2mbf's DICOM stages against pydicom and SimpleITK (used by tests/it/dicom_real.rs).

  dicom_crosscheck.py files              the CT and MR files (and the deflated ones) of pydicom's
      test data (and of pydicom-data, when installed), one per line: path<TAB>SeriesInstanceUID<TAB>SOPInstanceUID
  dicom_crosscheck.py series OUTDIR DIR...   how SimpleITK's ImageSeriesReader (file order from
      GetGDCMSeriesFileNames) reads each series folder DIR:
      OUTDIR/<i>.json  {"dir", "sitk": {size, spacing, origin, direction} | null, "error"}
      OUTDIR/<i>.f32   voxel values as little-endian float32, x, y, z with z fastest
"""
import glob, json, os, sys
import warnings

import numpy as np
import pydicom
import SimpleITK as sitk


def test_data_dirs():
    import pydicom.data
    dirs = [os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")]
    try:
        import data_store  # pydicom-data
        dirs.append(os.path.join(os.path.dirname(data_store.__file__), "data"))
    except ImportError:
        pass
    return dirs


def files():
    warnings.simplefilter("ignore")
    for d in test_data_dirs():
        for f in sorted(glob.glob(os.path.join(d, "**", "*"), recursive=True)):
            if not os.path.isfile(f):
                continue
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:
                continue
            deflated = ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.1.99"
            if (ds.get("Modality") in ("CT", "MR") or deflated) and "SeriesInstanceUID" in ds:
                print(f"{f}\t{ds.SeriesInstanceUID}\t{ds.get('SOPInstanceUID', '')}")


def series(outdir, dirs):
    os.makedirs(outdir, exist_ok=True)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    for i, d in enumerate(dirs):
        rec = {"dir": d, "sitk": None, "error": None}
        try:
            reader = sitk.ImageSeriesReader()
            names = reader.GetGDCMSeriesFileNames(d)
            if not names:
                raise RuntimeError("no series found")
            reader.SetFileNames(names)
            img = reader.Execute()
            if img.GetNumberOfComponentsPerPixel() != 1:
                raise RuntimeError(f"{img.GetNumberOfComponentsPerPixel()} components per pixel (colour)")
            if img.GetDimension() != 3:
                raise RuntimeError(f"a {img.GetDimension()}-D image")
            rec["sitk"] = {"size": list(img.GetSize()), "spacing": list(img.GetSpacing()),
                           "origin": list(img.GetOrigin()), "direction": list(img.GetDirection()),
                           "files": list(names)}
            a = sitk.GetArrayFromImage(img)  # (z, y, x)
            np.ascontiguousarray(np.transpose(a, (2, 1, 0))).astype('<f4').tofile(os.path.join(outdir, f"{i}.f32"))
        except RuntimeError as e:
            rec["error"] = str(e).strip().splitlines()[-1] if str(e).strip() else "error"
        with open(os.path.join(outdir, f"{i}.json"), "w") as fh:
            json.dump(rec, fh)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "files":
        files()
    elif cmd == "series":
        series(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(f"unknown command {cmd}")
