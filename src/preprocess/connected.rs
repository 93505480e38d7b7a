//! Largest face-connected component per label (DESIGN §3 step 5).
//!
//! For each listed label, only its largest 6-connected component is kept; the other
//! voxels of that label become 0. Unlisted labels are untouched. Linear time (union-find
//! over a raster scan). Ties are broken like ITK's ConnectedComponent + RelabelComponent:
//! the component met first in raster order (x fastest, then y, then z) wins.

use super::stage::{StageReport, for_each_patient};
use super::{read_input, require_label_map};
use crate::cohort;
use crate::error::Result;
use crate::io::{NiftiDtype, write_nifti};
use crate::volume::Volume;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The labels the reference cleans: LV, RV, LA, RA blood pools and the LV myocardium.
pub const DEFAULT_LABELS: [u8; 5] = [1, 2, 3, 4, 6];

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        parent[i as usize] = parent[p as usize];
        i = p;
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // Keep the smaller index as root: roots then stay the raster-first voxel's index.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// A copy of `mask` (integer labels stored as floats) in which every label of `labels`
/// keeps only its largest face-connected component.
pub fn keep_largest_components(mask: &Volume, labels: &[u8]) -> Volume {
    let [nx, ny, nz] = mask.shape();
    let n = nx * ny * nz;
    assert!(n < u32::MAX as usize, "volume too large for 32-bit component indices");
    let listed = |v: f32| v > 0.0 && v <= 255.0 && labels.contains(&(v.round() as u8));
    // Raster order index r = x + nx * (y + ny * z); values read through the [x, y, z] array.
    let value = |r: usize| {
        let (x, rest) = (r % nx, r / nx);
        mask.data[[x, rest % ny, rest / ny]]
    };
    let mut parent: Vec<u32> = (0..n as u32).collect();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let r = x + nx * (y + ny * z);
                let v = mask.data[[x, y, z]];
                if !listed(v) {
                    continue;
                }
                if x > 0 && mask.data[[x - 1, y, z]] == v {
                    union(&mut parent, r as u32, (r - 1) as u32);
                }
                if y > 0 && mask.data[[x, y - 1, z]] == v {
                    union(&mut parent, r as u32, (r - nx) as u32);
                }
                if z > 0 && mask.data[[x, y, z - 1]] == v {
                    union(&mut parent, r as u32, (r - nx * ny) as u32);
                }
            }
        }
    }
    // Component sizes, indexed by root (the raster-first voxel of each component).
    let mut size = vec![0u32; n];
    for r in 0..n {
        if listed(value(r)) {
            let root = find(&mut parent, r as u32);
            size[root as usize] += 1;
        }
    }
    // Winner per label: largest size, ties to the smallest root (met first in raster order).
    let mut best: [Option<(u32, u32)>; 256] = [None; 256];
    for r in 0..n {
        let v = value(r);
        if listed(v) && parent[r] == r as u32 {
            let l = v.round() as usize;
            if best[l].is_none_or(|(_, s)| size[r] > s) {
                best[l] = Some((r as u32, size[r]));
            }
        }
    }
    let mut out = mask.clone();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let v = mask.data[[x, y, z]];
                if listed(v) {
                    let r = x + nx * (y + ny * z);
                    let root = find(&mut parent, r as u32);
                    if best[v.round() as usize].map(|(b, _)| b) != Some(root) {
                        out.data[[x, y, z]] = 0.0;
                    }
                }
            }
        }
    }
    out
}

/// Read the label map `input`, keep the largest component of each of `labels`, write
/// `output` as uint8. Returns the time spent on the components alone (no file I/O).
pub fn connected_file(input: &Path, output: &Path, labels: &[u8]) -> Result<Duration> {
    let mask = read_input(input, "mask")?;
    require_label_map(&mask, input)?;
    let start = Instant::now();
    let cleaned = keep_largest_components(&mask, labels);
    let elapsed = start.elapsed();
    write_nifti(output, &cleaned, NiftiDtype::U8)?;
    Ok(elapsed)
}

/// [`connected_file`] for every patient of a `3.sorted_mask` folder:
/// `<pid>/CTA/CTA_MASK.nii.gz` → `<pid>/CTA/CTA_MASK_connected.nii.gz`.
pub fn connected_cohort(sorted_mask: &Path, labels: &[u8]) -> Result<StageReport> {
    let dir = |pid: &str| sorted_mask.join(pid).join("CTA");
    for_each_patient("connected", sorted_mask, true, |pid| {
        let output = dir(pid).join(cohort::mask::CONNECTED);
        connected_file(&dir(pid).join(cohort::mask::MASK), &output, labels)?;
        Ok(vec![output])
    })
}

/// The `3.sorted_mask` folder a path names: a cohort root's `3.sorted_mask` when it has
/// one, else the path itself.
pub fn sorted_mask_folder(path: &Path) -> PathBuf {
    let inside = path.join(cohort::SORTED_MASK);
    if inside.is_dir() { inside } else { path.to_path_buf() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;
    use ndarray::Array3;

    #[test]
    fn keeps_largest_and_leaves_unlisted_labels() {
        let mut d = Array3::<f32>::zeros([6, 5, 4]);
        // label 1: a 3-voxel bar and a 1-voxel island
        for x in 0..3 {
            d[[x, 0, 0]] = 1.0;
        }
        d[[5, 4, 3]] = 1.0;
        // label 6 diagonal neighbours are not face-connected: two singletons, first in raster order wins
        d[[1, 2, 1]] = 6.0;
        d[[2, 3, 1]] = 6.0;
        // label 5 islands untouched
        d[[0, 4, 3]] = 5.0;
        d[[4, 0, 3]] = 5.0;
        let m = Volume::new(d, Geometry::default());
        let out = keep_largest_components(&m, &DEFAULT_LABELS);
        assert_eq!(out.data[[5, 4, 3]], 0.0);
        assert_eq!(out.data[[2, 0, 0]], 1.0);
        assert_eq!(out.data[[1, 2, 1]], 6.0);
        assert_eq!(out.data[[2, 3, 1]], 0.0);
        assert_eq!(out.data[[0, 4, 3]], 5.0);
        assert_eq!(out.data[[4, 0, 3]], 5.0);
    }
}
