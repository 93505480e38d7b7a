#!/usr/bin/env bash
# Write the fuzzers' seed corpora into fuzz/seeds/<target>/ from real files: a small phantom
# cohort written by cta2mbf (NIfTI, DICOM, annotation table), pydicom's test files (every
# transfer syntax it ships, small files only), the configs in configs/, a tiny trained
# generator exported to safetensors and burnpack, and the reference-layout .pth fixture.
# Usage: fuzz/make_seeds.sh [path/to/cta2mbf]   (needs pydicom and openpyxl from PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/cta2mbf}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seeds=fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds"/{nifti,dicom_file,dicom_series,checkpoint,config,annotation}

"$bin" phantom --out "$work/ph" --cases 2 --size 16,16,16 --fov 80,80,80 --dicom >/dev/null

# NIfTI: float32 and int16 volumes, compressed and not, and a uint8 mask.
i=0
for f in $(find "$work/ph" -name '*.nii.gz' | sort | head -6); do
  cp "$f" "$seeds/nifti/gz_$i"; gunzip -c "$f" > "$seeds/nifti/raw_$i"; i=$((i + 1))
done

# One DICOM file: phantom slices, and pydicom's small test files.
"$bin" sort --in "$work/ph/raw" --out "$work/sorted" >/dev/null
for f in $(find "$work/sorted" -name '*.dcm' | sort | awk 'NR % 40 == 1' | head -4); do cp "$f" "$seeds/dicom_file/phantom_$(basename "$f")"; done
pyd=$(python3 -c 'import pydicom, os; print(os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files"))')
for f in "$pyd"/*.dcm; do
  if [ "$(stat -c %s "$f")" -le 20000 ]; then cp "$f" "$seeds/dicom_file/pydicom_$(basename "$f")"; fi
done

# A DICOM series: three slices of one phantom series joined by fuzz::SERIES_SEPARATOR.
series=$(dirname "$(find "$work/sorted" -name '*.dcm' | sort | head -1)")
python3 - "$series" "$seeds/dicom_series/three_slices" <<'PY'
import os, sys
files = sorted(os.listdir(sys.argv[1]))[:3]
sep = b"\0CTA2MBF-NEXT-FILE\0"
open(sys.argv[2], "wb").write(sep.join(open(os.path.join(sys.argv[1], f), "rb").read() for f in files))
PY

# Checkpoints: a tiny generator trained for one epoch, exported both ways; the .pth fixture.
python3 - configs/phantom_small.json "$work/tiny.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(name="tiny", crop_size=[16, 16, 16], samples_per_volume=1, n_epochs=1, save_epoch_freq=1, workers=1, prefetch=1)
c["generator"].update(ngf=1, n_blocks=1)
json.dump(c, open(sys.argv[2], "w"))
PY
"$bin" train --config "$work/tiny.json" --data-root "$work/ph/5.mbf_myocardium" --checkpoints-dir "$work/ck" --quiet >/dev/null
"$bin" export --checkpoint "$work/ck/tiny" --format safetensors --out "$seeds/checkpoint/tiny.safetensors" >/dev/null
"$bin" export --checkpoint "$work/ck/tiny" --format burn --out "$seeds/checkpoint/tiny.bpk" >/dev/null
cp tests/fixtures/torch_generator/other_net.pth "$seeds/checkpoint/other_net.pth"
cp tests/fixtures/torch_seg_unet/seg_unet.pth "$seeds/checkpoint/seg_reference.pth"

# Configs: the first byte picks the reader (0 generator, 1 segmentation, 2 registration).
for f in configs/*.json; do
  case "$f" in *seg*) k='\x01' ;; *) k='\x00' ;; esac
  { printf "$k"; cat "$f"; } > "$seeds/config/$(basename "$f" .json)"
done
printf '\x02{"metric": "ncc", "bins": 32, "affine_levels_mm": [8, 4], "bspline_levels_mm": [6], "grid_spacing_mm": 16, "samples": 2000, "seed": 3}' > "$seeds/config/registration"

# Annotation: the phantom's CSV (first byte 0) and the same table as xlsx (first byte 1).
{ printf '\x00'; cat "$work/ph/annotation/annotation.csv"; } > "$seeds/annotation/csv"
python3 - "$work/ph/annotation/annotation.csv" "$work/a.xlsx" <<'PY'
import csv, sys, openpyxl
wb = openpyxl.Workbook()
for row in csv.reader(open(sys.argv[1])):
    wb.active.append(row)
wb.save(sys.argv[2])
PY
{ printf '\x01'; cat "$work/a.xlsx"; } > "$seeds/annotation/xlsx"
du -sh "$seeds"/*
