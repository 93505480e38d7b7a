#!/usr/bin/env python3
"""Accuracy and speed of `cta2mbf register` against elastix on a real head CT with known truth.

What it measures
----------------
The source image is a real CT: `Cranium.inv3` of Debian's `invesalius-examples` (a head CT,
256x256x108 int16 HU, 0.957 x 0.957 x 1.5 mm). For each seeded case i a registration problem
with an exactly known answer is built in `OUT/case_i/`:

* `fixed.nii.gz`   the CT cropped to the head plus a margin (the same image in every case).
* `moving.nii.gz`  the CT warped by a known smooth transform and made to look like a CT
                   perfusion frame: thicker slices (2.5-3 mm, slice-profile blur), in-plane
                   spacing ~1.3x coarser, a field of view 20-30 % shorter in z and a little
                   smaller in-plane, a random monotone non-linear HU curve (another contrast
                   phase) and Gaussian noise (sd 10-20 HU); int16.
* `points.npy`     (n, 6) float64: n (default 2000) fixed physical points p inside the head
                   (CT > -300 HU) whose true image T(p) lies inside the moving image, and T(p).
                   T maps FIXED physical points to MOVING physical points, the ITK/elastix
                   convention: moving(T(p)) shows what fixed(p) shows.
* `truth.json`     the parameters of the case (affine, bumps, HU curve, noise, moving grid).

The warp is defined in closed form in the other direction, W: moving point q -> fixed point,
W(q) = c + M (q - c) + t + sum_k a_k exp(-|q - mu_k|^2 / (2 sigma_k^2)) (an affine about the
image centre c: rotation 2.4-6 deg, translation 4-10 mm, scales 0.95-1.05, shears <= 0.03,
plus Gaussian bumps of sigma 15-22 mm on a jittered 40 mm grid over the head, scaled so that
the non-linear displacement is <= 4 mm: ~1.7 mm on average, i.e. an exact affine alone leaves
a TRE of ~1.6 mm). The moving image is sampled exactly
as moving(q) = curve(blurred CT(W(q))) + noise, so the correct answer is T = W^-1, which is
computed at the evaluation points by fixed-point iteration (residual |W(T(p)) - p| < 1e-6 mm,
checked). A second check samples the moving image at T(p) and at p and compares with the
expected noise-free intensity at p: the truth must explain the image to about the noise level.

Both tools then register fixed <- moving, alternately on each case (elastix first, then
cta2mbf) so they see the same machine load:

* elastix (itk-elastix) with its default parameter maps `affine` then `bspline`
  (ParameterObject.GetDefaultParameterMap; only WriteResultImage is set to false so that the
  registration call does not also resample), N threads (default 2: ITK's global default
  thread count; not ElastixRegistrationMethod.SetNumberOfThreads, which makes the default
  bspline map segfault in itk-elastix 0.25, ITKElastix issue #160). Timed: the registration
  call alone, and separately transformix resampling the moving image onto the fixed grid. Its
  transform is evaluated at the points with transformix (a `point` file in fixed physical
  coordinates; transformix writes the moving-space `OutputPoint`), its Jacobian determinant
  with transformix's ComputeDeterminantOfSpatialJacobian (analytic, on the fixed grid). The
  TRE of its affine stage alone (transformix with TransformParameters.0 only) is recorded too.
* cta2mbf: `BIN register --fixed case_i/fixed.nii.gz --moving case_i/moving.nii.gz
  --out case_i/cta2mbf`, which must write `transform.tfm` (an ITK transform file that
  SimpleITK.ReadTransform loads, fixed -> moving), `moving.nii.gz` (moving resampled on the
  fixed grid) and `registration.json` ("seconds", "resample_seconds", "min_jacobian",
  "metric"). Its transform is evaluated with sitk.ReadTransform(...).TransformPoint(p); its
  Jacobian determinant is recomputed here from a displacement field on the fixed grid
  (SimpleITK DisplacementFieldJacobianDeterminant) besides the value it reports.

TRE = |T_tool(p) - T(p)| in mm over the evaluation points (mean and 95th percentile); the
"initial" TRE is that of the identity, |p - T(p)|. The mean over the "interior" points (true
position >= 15 mm inside the moving field of view, away from the partly overlapping edge) is
reported as well. Each tool's mapped points are kept in `case_i/TOOL/mapped_points.npy`.
Printed as a Markdown table and written to `OUT/results.md` and `OUT/results.json`.
Everything generated is deterministic for `--seed` (elastix's own random sampling aside).

How to run
----------
    apt-get install -y invesalius-examples            # the CT (Cranium.inv3)
    python3 -m pip install itk-elastix                # SimpleITK, scipy, numpy also needed
    cargo build --release                             # target/release/cta2mbf
    python3 scripts/register_vs_elastix.py --cases 10 --out /tmp/register_vs_elastix

`--skip-cta2mbf` runs only data generation and elastix; `--skip-elastix` only cta2mbf;
`--shrink 2` halves the CT resolution for a quick smoke test. See register_vs_elastix.md.
"""
import argparse
import json
import os
import platform
import plistlib
import re
import subprocess
import sys
import tarfile
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_BIN = os.path.join(REPO, "target", "release", "cta2mbf")
DEFAULT_CT = "/usr/share/doc/invesalius-examples/examples/Cranium.inv3"

AIR = -1024.0
HEAD_HU = -300.0  # evaluation points: CT above this, inside the head's connected component


# ----------------------------------------------------------------------------- CT loading

def find_cranium(path=None):
    """The Cranium.inv3 path: the given one, the usual Debian location, or `dpkg -L`'s."""
    if path:
        return path
    if os.path.exists(DEFAULT_CT):
        return DEFAULT_CT
    try:
        listing = subprocess.run(["dpkg", "-L", "invesalius-examples"], capture_output=True,
                                 text=True, check=True).stdout.split()
        for f in listing:
            if f.endswith("Cranium.inv3"):
                return f
    except (OSError, subprocess.CalledProcessError):
        pass
    sys.exit("Cranium.inv3 not found: apt-get install -y invesalius-examples (or pass --ct PATH)")


def load_cranium(path):
    """Read an InVesalius 3 project (.inv3) as a SimpleITK image (int16 HU).

    An .inv3 file is a gzip'd tar of one folder holding `main.plist` and the raw arrays it
    names. `main.plist["matrix"]` gives `filename` (matrix.dat), `dtype` (int16) and `shape`
    (z, y, x) of a C-ordered raw dump of the volume (a numpy memmap, little-endian);
    `main.plist["spacing"]` is (x, y, z) in mm. The file stores no origin nor direction:
    the direction is identity and the origin is put at minus half the extent, so that the
    volume is centred on (0, 0, 0) mm (a non-zero origin that a registration must honour).
    In Cranium.inv3 the row index runs posterior -> anterior (the face is at high y), so with
    an identity direction +y points anterior, not LPS's posterior; anatomy is irrelevant here.
    """
    with tarfile.open(path, "r:*") as tar:
        members = {m.name.split("/")[-1]: m for m in tar.getmembers() if m.isfile()}
        main = plistlib.loads(tar.extractfile(members["main.plist"]).read())
        matrix = main["matrix"]
        raw = tar.extractfile(members[matrix["filename"]]).read()
    dtype = np.dtype(matrix["dtype"]).newbyteorder("<")
    shape = tuple(int(s) for s in matrix["shape"])
    if len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: {len(raw)} bytes for shape {shape} {dtype}")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    spacing = [float(s) for s in main["spacing"]]
    img.SetSpacing(spacing)
    img.SetOrigin([-0.5 * (n - 1) * s for n, s in zip(img.GetSize(), spacing)])
    return img


def head_mask(arr):
    """Largest connected component of CT > HEAD_HU after a small opening (drops the headrest)."""
    m = ndimage.binary_opening(arr > HEAD_HU, iterations=2)
    lab, n = ndimage.label(m)
    if n == 0:
        raise ValueError("no voxel above -300 HU")
    sizes = ndimage.sum(m, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def head_box(img, mask, margin_mm=10.0):
    """Index bounds (x, y, z; inclusive) of the head mask's bounding box plus a margin."""
    zyx = np.argwhere(mask)
    lo, hi = zyx.min(0)[::-1], zyx.max(0)[::-1]  # x, y, z
    sp = np.array(img.GetSpacing())
    pad = np.ceil(margin_mm / sp).astype(int)
    size = np.array(img.GetSize())
    lo = np.maximum(lo - pad, 0)
    hi = np.minimum(hi + pad, size - 1)
    return lo.astype(int), hi.astype(int)


# ----------------------------------------------------------------------------- geometry helpers

def grid_bounds(img):
    """Physical bounds (xyz) of the voxel centres of an identity-direction image."""
    o, s, n = np.array(img.GetOrigin()), np.array(img.GetSpacing()), np.array(img.GetSize())
    return o, o + (n - 1) * s


def phys_to_cindex(img, pts):
    """Continuous (z, y, x) array indices of physical points (identity direction)."""
    o, s = np.array(img.GetOrigin()), np.array(img.GetSpacing())
    return ((pts - o) / s)[:, ::-1].T


def sample(arr, img, pts, order=1, cval=AIR):
    """Linear interpolation of a (z, y, x) array with img's geometry at physical points."""
    return ndimage.map_coordinates(arr, phys_to_cindex(img, pts), order=order, mode="constant",
                                   cval=cval)


def rotation(axis, angle):
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def random_unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


class Warp:
    """W(q) = c + M (q - c) + t + sum_k a_k exp(-|q - mu_k|^2 / (2 s_k^2)): moving -> fixed (mm).

    The truth of the registration (fixed -> moving) is W's inverse, computed by fixed-point
    iteration q <- M^-1 (p - t - d(q) - c) + c, a contraction while |grad d| |M^-1| < 1."""

    def __init__(self, centre, matrix, translation, mu, amp, sigma):
        self.c, self.M, self.t = np.asarray(centre), np.asarray(matrix), np.asarray(translation)
        self.mu, self.amp, self.sigma = np.asarray(mu), np.asarray(amp), np.asarray(sigma)
        self.Minv = np.linalg.inv(self.M)

    def bumps(self, q):
        out = np.zeros_like(q)
        for mu, a, s in zip(self.mu, self.amp, self.sigma):
            w = np.exp(-np.sum((q - mu) ** 2, axis=1) / (2 * s * s))
            out += w[:, None] * a
        return out

    def bumps_jacobian_norm(self, q):
        """Spectral norm of the bumps' Jacobian at each point."""
        jac = np.zeros((len(q), 3, 3))
        for mu, a, s in zip(self.mu, self.amp, self.sigma):
            d = q - mu
            w = np.exp(-np.sum(d * d, axis=1) / (2 * s * s))
            jac += (-w / (s * s))[:, None, None] * a[None, :, None] * d[:, None, :]
        return np.linalg.norm(jac, ord=2, axis=(1, 2))

    def __call__(self, q):
        return self.c + (q - self.c) @ self.M.T + self.t + self.bumps(q)

    def inverse(self, p, tol=1e-10, max_iter=200):
        base = p - self.t - self.c
        q = base @ self.Minv.T + self.c
        for _ in range(max_iter):
            q_new = (base - self.bumps(q)) @ self.Minv.T + self.c
            step = np.max(np.abs(q_new - q)) if len(q) else 0.0
            q = q_new
            if step < tol:
                break
        return q

    def to_json(self):
        return {"centre": self.c.tolist(), "matrix": self.M.tolist(),
                "translation": self.t.tolist(), "bump_centres": self.mu.tolist(),
                "bump_amplitudes": self.amp.tolist(), "bump_sigmas": self.sigma.tolist()}


def random_warp(rng, fixed, mask_pts, args):
    """A random affine about the fixed image's centre plus Gaussian bumps inside the head."""
    lo, hi = grid_bounds(fixed)
    centre = 0.5 * (lo + hi)
    angle = np.deg2rad(args.max_rotation) * rng.uniform(0.4, 1.0)
    rot = rotation(random_unit(rng), angle)
    scale = np.diag(rng.uniform(0.95, 1.05, size=3))
    shear = np.eye(3)
    shear[np.triu_indices(3, 1)] = rng.uniform(-0.03, 0.03, size=3)
    matrix = rot @ scale @ shear
    translation = random_unit(rng) * args.max_translation * rng.uniform(0.4, 1.0)
    # bump centres: a jittered grid (spacing ~40 mm) over the head's bounding box, so that the
    # non-linear displacement covers the whole head (mean ~1.7 mm, max args.max_bump)
    gs = args.bump_spacing
    plo, phi = mask_pts.min(0), mask_pts.max(0)
    axes = [np.arange(a + 0.5 * gs * rng.uniform(0.5, 1.5), b, gs) for a, b in zip(plo, phi)]
    mu = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    mu = mu + rng.uniform(-0.2 * gs, 0.2 * gs, size=mu.shape)
    k = len(mu)
    sigma = rng.uniform(15.0, 22.0, size=k)
    amp = np.array([random_unit(rng) * rng.uniform(1.0, args.max_bump) for _ in range(k)])
    warp = Warp(centre, matrix, translation, mu, amp, sigma)
    warp.rotation_deg = float(np.rad2deg(angle))
    # overlapping bumps may add up: rescale so that |d| <= max_bump everywhere in the head
    probe = mask_pts[rng.integers(0, len(mask_pts), size=20000)]
    peak = np.max(np.linalg.norm(warp.bumps(probe), axis=1))
    if peak > args.max_bump:
        warp.amp *= args.max_bump / peak
    lip = np.max(warp.bumps_jacobian_norm(probe)) * np.linalg.norm(warp.Minv, 2)
    if lip >= 0.6:
        raise RuntimeError(f"warp too strong to invert safely (contraction {lip:.2f})")
    return warp


# ----------------------------------------------------------------------------- contrast

HU_KNOTS = np.array([-1024.0, -600.0, -150.0, 20.0, 100.0, 300.0, 1000.0, 2000.0])


def random_hu_curve(rng):
    """A random strictly increasing piecewise-linear HU curve on [-1024, 2000] (linear beyond):
    soft tissue (20-100 HU) steepened 1.5-3x like an enhancing phase, the rest 0.5-1.4x."""
    slopes = rng.uniform(0.7, 1.3, size=len(HU_KNOTS) - 1)
    slopes[3] = rng.uniform(1.5, 3.0)   # 20..100 HU: enhancing tissue
    slopes[4] = rng.uniform(0.8, 1.6)   # 100..300 HU
    slopes[5:] = rng.uniform(0.5, 1.0, size=2)  # bone compressed
    y = np.concatenate([[AIR], AIR + np.cumsum(np.diff(HU_KNOTS) * slopes)])
    return HU_KNOTS, y


def apply_curve(hu, knots):
    x, y = knots
    out = np.interp(hu, x, y)
    over = hu > x[-1]
    out[over] = y[-1] + (hu[over] - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
    return out


# ----------------------------------------------------------------------------- case generation

def make_case(i, ct, ct_arr, ct_mask, fixed, args, case_dir):
    rng = np.random.default_rng([args.seed, i])
    # the head, as physical points (for bump centres and warp checks)
    zyx = np.argwhere(ct_mask)
    mask_pts = np.array(ct.GetOrigin()) + zyx[:, ::-1] * np.array(ct.GetSpacing())
    warp = random_warp(rng, fixed, mask_pts, args)

    # moving grid: coarser, smaller field of view (cropped off the fixed field of view)
    fsp = np.array(fixed.GetSpacing())
    msp = np.array([fsp[0] * rng.uniform(1.25, 1.35), 0.0, rng.uniform(2.5, 3.0) * args.shrink])
    msp[1] = msp[0]
    lo, hi = grid_bounds(fixed)
    extent = hi - lo
    crop = np.array([rng.uniform(0.04, 0.10), rng.uniform(0.04, 0.10), rng.uniform(0.20, 0.30)])
    share = rng.uniform(0.3, 0.7, size=3)  # part of the crop taken off the low side
    mlo = lo + extent * crop * share
    mhi = hi - extent * crop * (1 - share)
    msize = (np.floor((mhi - mlo) / msp) + 1).astype(int)

    # slice-profile / in-plane blur: FWHM growing from the CT's spacing to the moving one
    csp = np.array(ct.GetSpacing())
    sigma_mm = np.sqrt(np.maximum(msp ** 2 - csp ** 2, 0.0)) / 2.3548
    blurred = ndimage.gaussian_filter(ct_arr.astype(np.float32), (sigma_mm / csp)[::-1],
                                      mode="nearest")

    # moving(q) = curve(blurred CT(W(q))) + noise, sampled exactly through the closed-form W
    knots = random_hu_curve(rng)
    noise_sd = rng.uniform(10.0, 20.0)
    mv = np.empty(msize[::-1], dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(msize[0]), np.arange(msize[1]), indexing="xy")
    for k in range(msize[2]):
        q = mlo + np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k)], 1) * msp
        mv[k] = sample(blurred, ct, warp(q)).reshape(ii.shape)
    mv = apply_curve(mv, knots) + rng.normal(0.0, noise_sd, size=mv.shape)
    mv = np.clip(np.rint(mv), -1024, 3071).astype(np.int16)
    moving = sitk.GetImageFromArray(mv)
    moving.SetSpacing(msp.tolist())
    moving.SetOrigin(mlo.tolist())

    # evaluation points: inside the head (fixed), true image inside the moving grid
    margin = msp  # one moving voxel inside the moving grid's voxel centres
    ct_f, mask_f = ct_arr.astype(np.float32), ct_mask.astype(np.float32)
    pts, tru = [], []
    n_have = 0
    while n_have < args.points:
        p = rng.uniform(lo, hi, size=(4 * args.points, 3))
        inside = sample(mask_f, ct, p, order=0, cval=0) > 0.5
        inside &= sample(ct_f, ct, p, order=1) > HEAD_HU
        p = p[inside]
        q = warp.inverse(p)
        ok = np.all((q >= mlo + margin) & (q <= mlo + (msize - 1) * msp - margin), axis=1)
        pts.append(p[ok])
        tru.append(q[ok])
        n_have += int(ok.sum())
    pts = np.concatenate(pts)[:args.points]
    tru = np.concatenate(tru)[:args.points]

    # checks of the truth: exact inverse, and it explains the moving image's intensities
    residual = float(np.max(np.linalg.norm(warp(tru) - pts, axis=1)))
    if residual > 1e-6:
        raise RuntimeError(f"case {i}: inverse residual {residual:.3g} mm")
    expected = apply_curve(sample(blurred, ct, pts).astype(np.float64), knots)
    at_truth = sample(mv.astype(np.float32), moving, tru)
    at_identity = sample(mv.astype(np.float32), moving, pts)
    rms_truth = float(np.sqrt(np.mean((at_truth - expected) ** 2)))
    rms_identity = float(np.sqrt(np.mean((at_identity - expected) ** 2)))
    if not rms_truth < 0.5 * rms_identity:
        raise RuntimeError(f"case {i}: truth does not explain the moving image "
                           f"(rms {rms_truth:.1f} HU vs identity {rms_identity:.1f} HU)")

    os.makedirs(case_dir, exist_ok=True)
    sitk.WriteImage(fixed, os.path.join(case_dir, "fixed.nii.gz"), useCompression=True)
    sitk.WriteImage(moving, os.path.join(case_dir, "moving.nii.gz"), useCompression=True)
    np.save(os.path.join(case_dir, "points.npy"), np.concatenate([pts, tru], axis=1))
    init = np.linalg.norm(tru - pts, axis=1)
    info = {
        "case": i, "seed": args.seed, "warp_moving_to_fixed": warp.to_json(),
        "rotation_deg": warp.rotation_deg,
        "translation_mm": float(np.linalg.norm(warp.t)),
        "hu_curve": {"x": knots[0].tolist(), "y": knots[1].tolist()}, "noise_sd": noise_sd,
        "moving_size": [int(n) for n in msize], "moving_spacing": msp.tolist(),
        "moving_origin": mlo.tolist(), "fixed_size": list(fixed.GetSize()),
        "fixed_spacing": list(fixed.GetSpacing()), "fixed_origin": list(fixed.GetOrigin()),
        "points": len(pts), "inverse_residual_mm": residual,
        "check_rms_hu_at_truth": rms_truth, "check_rms_hu_at_identity": rms_identity,
        "initial_tre_mean": float(init.mean()), "initial_tre_p95": float(np.percentile(init, 95)),
        "initial_tre_max": float(init.max()),
    }
    with open(os.path.join(case_dir, "truth.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info, pts, tru


# ----------------------------------------------------------------------------- elastix

def write_point_file(path, pts):
    """elastix/transformix point file: `point` (physical coordinates), count, one x y z a line."""
    with open(path, "w") as f:
        f.write(f"point\n{len(pts)}\n")
        for p in pts:
            f.write(f"{p[0]:.10f} {p[1]:.10f} {p[2]:.10f}\n")


def read_output_points(path):
    """The `OutputPoint = [ x y z ]` fields of transformix's outputpoints.txt, in input order.
    (itk.transformix_pointset's reduce_output takes fixed columns 30:33 instead; parsing the
    named field does not depend on the line layout.)"""
    out = []
    with open(path) as f:
        for line in f:
            m = re.search(r"OutputPoint\s*=\s*\[([^\]]*)\]", line)
            if m:
                out.append([float(v) for v in m.group(1).split()])
    return np.array(out)


def transformix_points(moving, tpo, pts, out_dir):
    """Map fixed physical points through an elastix transform with transformix (point file)."""
    import itk
    os.makedirs(out_dir, exist_ok=True)
    pfile = os.path.join(out_dir, "fixed_points.txt")
    write_point_file(pfile, pts)
    tfx = itk.TransformixFilter.New(moving)  # a moving image is required (and resampled again)
    tfx.SetTransformParameterObject(tpo)
    tfx.SetFixedPointSetFileName(pfile)
    tfx.SetOutputDirectory(out_dir)
    tfx.SetLogToConsole(False)
    tfx.UpdateLargestPossibleRegion()
    mapped = read_output_points(os.path.join(out_dir, "outputpoints.txt"))
    if mapped.shape != pts.shape:
        raise RuntimeError(f"transformix returned {mapped.shape} points for {pts.shape}")
    return mapped


def itk_to_sitk_vector(img_itk):
    import itk
    arr = itk.array_from_image(img_itk)
    out = sitk.GetImageFromArray(arr.astype(np.float64), isVector=True)
    out.SetSpacing(tuple(itk.spacing(img_itk)))
    out.SetOrigin(tuple(itk.origin(img_itk)))
    out.SetDirection(tuple(itk.array_from_matrix(img_itk.GetDirection()).ravel().tolist()))
    return out


def run_elastix(case_dir, pts, head):
    import itk
    out_dir = os.path.join(case_dir, "elastix")
    os.makedirs(out_dir, exist_ok=True)
    fixed = itk.imread(os.path.join(case_dir, "fixed.nii.gz"), itk.F)
    moving = itk.imread(os.path.join(case_dir, "moving.nii.gz"), itk.F)
    po = itk.ParameterObject.New()
    for name in ("affine", "bspline"):
        pm = po.GetDefaultParameterMap(name)
        pm["WriteResultImage"] = ["false"]  # the resampling is timed separately (transformix)
        po.AddParameterMap(pm)
    for k, name in enumerate(("affine", "bspline")):
        itk.ParameterObject.WriteParameterFile(po.GetParameterMap(k),
                                               os.path.join(out_dir, f"parameters.{name}.txt"))

    elx = itk.ElastixRegistrationMethod.New(fixed, moving)
    elx.SetParameterObject(po)
    # no elx.SetNumberOfThreads(threads): with it, the default bspline map (multi-metric: MI +
    # TransformBendingEnergyPenalty) segfaults in itk-elastix 0.25 (ITKElastix issue #160);
    # the thread count comes from ITK's global default, set in main() before `import itk`.
    elx.SetOutputDirectory(out_dir)
    elx.SetLogToConsole(False)
    elx.SetLogToFile(True)
    t0 = time.perf_counter()
    elx.UpdateLargestPossibleRegion()
    seconds = time.perf_counter() - t0
    tpo = elx.GetTransformParameterObject()
    for k in range(tpo.GetNumberOfParameterMaps()):
        tpo.SetParameter(k, "DefaultPixelValue", str(int(AIR)))

    # transformix: resample the moving image on the fixed grid (timed)
    tfx = itk.TransformixFilter.New(moving)
    tfx.SetTransformParameterObject(tpo)
    tfx.SetLogToConsole(False)
    t0 = time.perf_counter()
    tfx.UpdateLargestPossibleRegion()
    resample_seconds = time.perf_counter() - t0
    res = np.clip(np.rint(itk.array_from_image(tfx.GetOutput())), -32768, 32767).astype(np.int16)
    res_img = sitk.GetImageFromArray(res)
    res_img.CopyInformation(sitk.ReadImage(os.path.join(case_dir, "fixed.nii.gz")))
    sitk.WriteImage(res_img, os.path.join(out_dir, "moving.nii.gz"), useCompression=True)

    # transformix: the evaluation points (fixed physical -> moving physical), with the whole
    # transform and with the affine stage alone (a diagnostic)
    mapped = transformix_points(moving, tpo, pts, os.path.join(out_dir, "points"))
    affine_only = itk.ParameterObject.New()
    affine_only.AddParameterMap(tpo.GetParameterMap(0))
    mapped_affine = transformix_points(moving, affine_only, pts,
                                       os.path.join(out_dir, "points_affine"))

    # transformix: determinant of the spatial Jacobian (analytic) and the deformation field
    jdir = os.path.join(out_dir, "jacobian")
    os.makedirs(jdir, exist_ok=True)
    tfx = itk.TransformixFilter.New(moving)
    tfx.SetTransformParameterObject(tpo)
    tfx.SetComputeDeterminantOfSpatialJacobian(True)
    tfx.SetComputeDeformationField(True)
    tfx.SetOutputDirectory(jdir)
    tfx.SetLogToConsole(False)
    tfx.UpdateLargestPossibleRegion()
    detj = itk.array_from_image(itk.imread(os.path.join(jdir, "spatialJacobian.nii"), itk.F))
    field = itk_to_sitk_vector(tfx.GetOutputDeformationField())
    detj_fd = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    for f in os.listdir(jdir):  # large float images; keep only the summary
        if f.endswith(".nii"):
            os.remove(os.path.join(jdir, f))
    return {
        "seconds": seconds, "resample_seconds": resample_seconds, "mapped": mapped,
        "mapped_affine": mapped_affine, "min_jacobian": float(detj.min()),
        "min_jacobian_head": float(detj[head].min()), "min_jacobian_fd": float(detj_fd.min()),
    }


# ----------------------------------------------------------------------------- cta2mbf

def run_cta2mbf(case_dir, pts, head, args):
    out_dir = os.path.join(case_dir, "cta2mbf")
    cmd = [args.cta2mbf, "register", "--fixed", os.path.join(case_dir, "fixed.nii.gz"),
           "--moving", os.path.join(case_dir, "moving.nii.gz"), "--out", out_dir]
    cmd += args.cta2mbf_arg
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "log.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n--- stdout\n" + proc.stdout + "--- stderr\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    with open(os.path.join(out_dir, "registration.json")) as f:
        report = json.load(f)
    tx = sitk.ReadTransform(os.path.join(out_dir, "transform.tfm"))
    mapped = np.array([tx.TransformPoint(tuple(float(v) for v in p)) for p in pts])
    fixed = sitk.ReadImage(os.path.join(case_dir, "fixed.nii.gz"))
    field = sitk.TransformToDisplacementField(tx, sitk.sitkVectorFloat64, fixed.GetSize(),
                                              fixed.GetOrigin(), fixed.GetSpacing(),
                                              fixed.GetDirection())
    detj = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    return {
        "seconds": float(report["seconds"]), "resample_seconds": report.get("resample_seconds"),
        "wall_seconds": wall, "mapped": mapped, "reported_min_jacobian": report.get("min_jacobian"),
        "metric": report.get("metric"), "min_jacobian": float(detj.min()),
        "min_jacobian_head": float(detj[head].min()), "transform": describe_transform(tx),
    }


def describe_transform(tx):
    """Class names of a (composite) transform's parts, for the record."""
    try:
        comp = sitk.CompositeTransform(tx)
        return [comp.GetNthTransform(k).GetName() for k in range(comp.GetNumberOfTransforms())]
    except Exception:  # not a composite
        return [tx.GetName()]


# ----------------------------------------------------------------------------- report

def interior_points(tru, info, mm):
    """Points whose true moving position is at least `mm` inside the moving field of view
    (TRE there is not dominated by the field-of-view edge, where the images overlap partly)."""
    lo = np.array(info["moving_origin"])
    hi = lo + (np.array(info["moving_size"]) - 1) * np.array(info["moving_spacing"])
    return np.all((tru >= lo + mm) & (tru <= hi - mm), axis=1)


def tre(mapped, truth, interior=None):
    """TRE statistics (mm); `interior` (bool per point) adds the mean over those points."""
    d = np.linalg.norm(mapped - truth, axis=1)
    out = {"mean": float(d.mean()), "p95": float(np.percentile(d, 95)), "max": float(d.max()),
           "median": float(np.median(d))}
    if interior is not None and interior.any():
        out["interior_mean"] = float(d[interior].mean())
        out["interior_p95"] = float(np.percentile(d[interior], 95))
    return out


def fmt(v, nd=2):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}"


def markdown(results, summary):
    head = ("| case | initial TRE mean / p95 (mm) | elastix TRE mean / p95 (mm) "
            "| cta2mbf TRE mean / p95 (mm) | elastix min det J | cta2mbf min det J "
            "| elastix reg s | cta2mbf reg s | time ratio cta2mbf/elastix "
            "| elastix resample s | cta2mbf resample s | cta2mbf wall s |")
    lines = [head, "|" + "---|" * 12]
    for r in results:
        e, c = r.get("elastix") or {}, r.get("cta2mbf") or {}
        et, ct = e.get("tre") or {}, c.get("tre") or {}
        lines.append(
            f"| {r['case']} | {fmt(r['initial_tre']['mean'])} / {fmt(r['initial_tre']['p95'])} "
            f"| {fmt(et.get('mean'))} / {fmt(et.get('p95'))} "
            f"| {fmt(ct.get('mean'))} / {fmt(ct.get('p95'))} "
            f"| {fmt(e.get('min_jacobian'), 3)} | {fmt(c.get('min_jacobian'), 3)} "
            f"| {fmt(e.get('seconds'), 1)} | {fmt(c.get('seconds'), 1)} "
            f"| {fmt(r.get('time_ratio'))} "
            f"| {fmt(e.get('resample_seconds'), 2)} | {fmt(c.get('resample_seconds'), 2)} "
            f"| {fmt(c.get('wall_seconds'), 1)} |")
    s = summary
    lines.append("")
    lines.append(f"Mean over cases: initial TRE {fmt(s['initial_tre_mean'])} mm, elastix "
                 f"{fmt(s.get('elastix_tre_mean'))} mm in "
                 f"{fmt(s.get('elastix_seconds_mean'), 1)} s, "
                 f"cta2mbf {fmt(s.get('cta2mbf_tre_mean'))} mm in "
                 f"{fmt(s.get('cta2mbf_seconds_mean'), 1)} s (elastix's affine stage alone: "
                 f"{fmt(s.get('elastix_affine_stage_tre_mean'))} mm).")
    lines.append(f"Interior points (true position >= {s['interior_mm']:g} mm inside the moving "
                 f"field of view): initial {fmt(s['initial_tre_interior_mean'])} mm, elastix "
                 f"{fmt(s.get('elastix_tre_interior_mean'))} mm, cta2mbf "
                 f"{fmt(s.get('cta2mbf_tre_interior_mean'))} mm.")
    if s.get("compared"):
        lines.append(f"cta2mbf's mean TRE <= elastix's on {s['cta2mbf_tre_le_elastix']} of "
                     f"{s['compared']} cases; time ratio cta2mbf/elastix: mean "
                     f"{fmt(s['time_ratio_mean'])}, geometric mean {fmt(s['time_ratio_geomean'])}.")
    for r in results:
        for tool in ("elastix", "cta2mbf"):
            if r.get(tool + "_error"):
                lines.append(f"case {r['case']}: {tool} failed: {r[tool + '_error']}")
    return "\n".join(lines)


def summarize(results):
    def mean(vals):
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    s = {"cases": len(results),
         "initial_tre_mean": mean([r["initial_tre"]["mean"] for r in results]),
         "initial_tre_interior_mean": mean(
             [r["initial_tre"].get("interior_mean") for r in results])}
    for tool in ("elastix", "cta2mbf"):
        rs = [r[tool] for r in results if r.get(tool)]
        s[tool + "_tre_mean"] = mean([t["tre"]["mean"] for t in rs])
        s[tool + "_tre_interior_mean"] = mean([t["tre"].get("interior_mean") for t in rs])
        s[tool + "_tre_p95_mean"] = mean([t["tre"]["p95"] for t in rs])
        s[tool + "_seconds_mean"] = mean([t["seconds"] for t in rs])
        s[tool + "_min_jacobian"] = min([t["min_jacobian"] for t in rs], default=None)
        s[tool + "_failures"] = sum(1 for r in results if r.get(tool + "_error"))
    s["elastix_affine_stage_tre_mean"] = mean(
        [r["elastix"]["tre_affine_stage"]["mean"] for r in results if r.get("elastix")])
    both = [r for r in results if r.get("elastix") and r.get("cta2mbf")]
    s["compared"] = len(both)
    if both:
        s["cta2mbf_tre_le_elastix"] = sum(
            r["cta2mbf"]["tre"]["mean"] <= r["elastix"]["tre"]["mean"] for r in both)
        ratios = [max(r["time_ratio"], 1e-9) for r in both]
        s["time_ratio_mean"] = float(np.mean(ratios))
        s["time_ratio_geomean"] = float(np.exp(np.mean(np.log(ratios))))
    return s


# ----------------------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    ap.add_argument("--first-case", type=int, default=0, help="index of the first case")
    ap.add_argument("--seed", type=int, default=0, help="seed of the case generator")
    ap.add_argument("--out", default="/tmp/register_vs_elastix", help="output folder")
    ap.add_argument("--cta2mbf", default=DEFAULT_BIN, help="the cta2mbf binary")
    ap.add_argument("--cta2mbf-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `cta2mbf register` (repeatable)")
    ap.add_argument("--skip-cta2mbf", action="store_true", help="data + elastix only")
    ap.add_argument("--skip-elastix", action="store_true", help="data + cta2mbf only")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for elastix (and RAYON_NUM_THREADS for cta2mbf); default 2")
    ap.add_argument("--points", type=int, default=2000, help="evaluation points per case")
    ap.add_argument("--ct", default=None, help="Cranium.inv3 (default: from invesalius-examples)")
    ap.add_argument("--shrink", type=int, default=1,
                    help="shrink the CT by this integer factor first (quick smoke tests)")
    ap.add_argument("--margin", type=float, default=10.0, help="head crop margin in mm")
    ap.add_argument("--interior-mm", type=float, default=15.0,
                    help="distance to the moving field of view's faces of the 'interior' points")
    ap.add_argument("--max-rotation", type=float, default=6.0, help="degrees")
    ap.add_argument("--max-translation", type=float, default=10.0, help="mm")
    ap.add_argument("--max-bump", type=float, default=4.0, help="max non-linear displacement, mm")
    ap.add_argument("--bump-spacing", type=float, default=40.0,
                    help="spacing of the grid of Gaussian bumps (sigma 15-22 mm), mm")
    return ap.parse_args()


def main():
    args = parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)  # before `import itk`
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    if not args.skip_elastix:
        import itk
        itk.MultiThreaderBase.SetGlobalMaximumNumberOfThreads(args.threads)
        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(args.threads)
    if not args.skip_cta2mbf and not os.access(args.cta2mbf, os.X_OK):
        sys.exit(f"{args.cta2mbf} is not an executable (build it, pass --cta2mbf, "
                 "or use --skip-cta2mbf)")
    os.makedirs(args.out, exist_ok=True)

    ct_path = find_cranium(args.ct)
    ct = load_cranium(ct_path)
    if args.shrink > 1:
        ct = sitk.Cast(sitk.BinShrink(ct, [args.shrink] * 3), sitk.sitkInt16)
    ct_arr = sitk.GetArrayFromImage(ct)
    ct_mask = head_mask(ct_arr)
    lo, hi = head_box(ct, ct_mask, args.margin)
    fixed = ct[int(lo[0]):int(hi[0]) + 1, int(lo[1]):int(hi[1]) + 1, int(lo[2]):int(hi[2]) + 1]
    # the head mask on the fixed grid, for min det J inside the head
    fixed_head = ct_mask[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
    print(f"CT {ct_path}: {ct.GetSize()} voxels, spacing "
          f"{tuple(round(s, 4) for s in ct.GetSpacing())} mm; fixed (head crop) "
          f"{fixed.GetSize()}, origin {tuple(round(o, 2) for o in fixed.GetOrigin())}", flush=True)
    try:
        from importlib.metadata import version
        elastix_version = version("itk-elastix")
    except Exception:
        elastix_version = None
    meta = {"ct": ct_path, "ct_size": list(ct.GetSize()), "ct_spacing": list(ct.GetSpacing()),
            "fixed_size": list(fixed.GetSize()), "seed": args.seed, "threads": args.threads,
            "points": args.points, "shrink": args.shrink, "cta2mbf": args.cta2mbf,
            "cta2mbf_args": args.cta2mbf_arg, "itk_elastix": elastix_version,
            "simpleitk": sitk.Version.VersionString(), "cpus": os.cpu_count(),
            "machine": platform.platform()}

    results = []
    for i in range(args.first_case, args.first_case + args.cases):
        case_dir = os.path.join(args.out, f"case_{i}")
        t0 = time.perf_counter()
        info, pts, tru = make_case(i, ct, ct_arr, ct_mask, fixed, args, case_dir)
        interior = interior_points(tru, info, args.interior_mm)
        r = {"case": i, "truth": info, "interior_points": int(interior.sum()),
             "initial_tre": tre(pts, tru, interior)}
        print(f"case {i}: generated in {time.perf_counter() - t0:.1f} s; moving "
              f"{info['moving_size']} at {tuple(round(s, 2) for s in info['moving_spacing'])} mm; "
              f"rotation {info['rotation_deg']:.1f} deg, "
              f"translation {info['translation_mm']:.1f} mm; "
              f"initial TRE {r['initial_tre']['mean']:.2f} mm (p95 {r['initial_tre']['p95']:.2f}); "
              f"truth check {info['check_rms_hu_at_truth']:.1f} HU rms vs identity "
              f"{info['check_rms_hu_at_identity']:.1f}", flush=True)
        for tool in ("elastix", "cta2mbf"):
            if getattr(args, "skip_" + tool):
                continue
            try:
                if tool == "elastix":
                    out = run_elastix(case_dir, pts, fixed_head)
                else:
                    out = run_cta2mbf(case_dir, pts, fixed_head, args)
            except Exception as exc:  # keep going: a failed case is reported, not fatal
                r[tool + "_error"] = f"{type(exc).__name__}: {exc}"
                print(f"case {i}: {tool} failed: {r[tool + '_error']}", flush=True)
                continue
            mapped = out.pop("mapped")
            np.save(os.path.join(case_dir, tool, "mapped_points.npy"), mapped)
            out["tre"] = tre(mapped, tru, interior)
            if "mapped_affine" in out:
                out["tre_affine_stage"] = tre(out.pop("mapped_affine"), tru, interior)
            r[tool] = out
            print(f"case {i}: {tool} TRE {out['tre']['mean']:.2f} mm (p95 {out['tre']['p95']:.2f}) "
                  f"in {out['seconds']:.1f} s; min det J {out['min_jacobian']:.3f}", flush=True)
        if r.get("elastix") and r.get("cta2mbf"):
            r["time_ratio"] = r["cta2mbf"]["seconds"] / r["elastix"]["seconds"]
        results.append(r)
        table = write_results(args, meta, results)  # after every case: a crash keeps the rest

    print("\n" + table)
    print(f"\nwrote {os.path.join(args.out, 'results.md')} and results.json")


def write_results(args, meta, results):
    summary = summarize(results)
    summary["interior_mm"] = args.interior_mm
    table = markdown(results, summary)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "cases": results}, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"# cta2mbf register vs elastix\n\nCT `{meta['ct']}`, fixed "
                f"{tuple(meta['fixed_size'])}, seed {args.seed}, {args.threads} threads, "
                f"{args.points} points per case, itk-elastix {meta['itk_elastix']}, "
                f"{meta['cpus']} CPUs.\n\n{table}\n")
    return table


if __name__ == "__main__":
    main()
