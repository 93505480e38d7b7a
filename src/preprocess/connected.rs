//! Largest face-connected component per label (docs/design.md §3 step 5).
//!
//! For each listed label, only its largest 6-connected component is kept; the other
//! voxels of that label become 0. Unlisted labels are untouched. Linear time (union-find
//! over one scan in memory order). Ties are broken like ITK's ConnectedComponent +
//! RelabelComponent: the component met first in raster order (x fastest, then y, then z) wins.

use super::mask_qc::{MaskQc, QcPolicy, check_files};
use super::stage::{PatientStage, StagePath, StageReport, StageRun, for_each_patient};
use super::{read_input, require_label_map};
use crate::cohort::{self, Cohort};
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
        // The smaller index becomes the root, so a root is its component's first voxel in memory.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// The label a voxel value belongs to when it is one of `labels`, else `None`.
fn label_filter(labels: &[u8]) -> impl Fn(f32) -> Option<usize> {
    let mut listed = [false; 256];
    for &l in labels {
        listed[l as usize] = true;
    }
    move |x: f32| (x > 0.0 && x <= 255.0 && listed[x.round() as usize]).then(|| x.round() as usize)
}

/// Union-find over the voxels of `v` (shape `[x, y, z]`, z fastest) whose `label` is some:
/// each voxel is joined with its three preceding face neighbours of the same value. A root is
/// its component's first voxel in memory order.
fn union_components(v: &[f32], [nx, ny, nz]: [usize; 3], label: &impl Fn(f32) -> Option<usize>) -> Vec<u32> {
    let n = nx * ny * nz;
    assert!(n < u32::MAX as usize, "volume too large for 32-bit component indices");
    let (sx, sy) = (ny * nz, nz);
    let mut parent: Vec<u32> = (0..n as u32).collect();
    for x in 0..nx {
        for y in 0..ny {
            let row = x * sx + y * sy;
            for z in 0..nz {
                let m = row + z;
                let val = v[m];
                if label(val).is_none() {
                    continue;
                }
                if z > 0 && v[m - 1] == val {
                    union(&mut parent, m as u32, (m - 1) as u32);
                }
                if y > 0 && v[m - sy] == val {
                    union(&mut parent, m as u32, (m - sy) as u32);
                }
                if x > 0 && v[m - sx] == val {
                    union(&mut parent, m as u32, (m - sx) as u32);
                }
            }
        }
    }
    parent
}

/// A copy of `mask` (integer labels stored as floats) in which every label of `labels`
/// keeps only its largest face-connected component.
///
/// Voxels are visited in memory order (`[x, y, z]`, z fastest) and joined with their three
/// preceding face neighbours; components are then counted and the largest of each label kept.
/// When several components of a label share the largest size, the one whose first voxel in
/// ITK's raster order (x fastest) comes first wins, as ITK's RelabelComponent orders them.
pub fn keep_largest_components(mask: &Volume, labels: &[u8]) -> Volume {
    let [nx, ny, nz] = mask.shape();
    let n = nx * ny * nz;
    let data = mask.data.as_standard_layout();
    let v = data.as_slice().expect("standard layout");
    let label = label_filter(labels);
    let (sx, sy) = (ny * nz, nz);
    let mut parent = union_components(v, mask.shape(), &label);
    // Component sizes, indexed by root; then the largest components of each label.
    let size = root_sizes(&mut parent, v, &label);
    let mut largest = [0u32; 256];
    let mut candidates: Vec<Vec<u32>> = vec![Vec::new(); 256];
    for m in 0..n {
        if let Some(l) = label(v[m])
            && parent[m] == m as u32
        {
            let s = size[m];
            if s > largest[l] {
                largest[l] = s;
                candidates[l].clear();
            }
            if s == largest[l] {
                candidates[l].push(m as u32);
            }
        }
    }
    drop(size);
    // Ties: the component whose first voxel in raster order (x + nx·(y + ny·z)) is smallest.
    let mut winner = [u32::MAX; 256];
    let tied: Vec<usize> = (0..256).filter(|&l| candidates[l].len() > 1).collect();
    for l in 0..256 {
        if candidates[l].len() == 1 {
            winner[l] = candidates[l][0];
        }
    }
    if !tied.is_empty() {
        let mut first: std::collections::HashMap<u32, usize> = tied.iter().flat_map(|&l| candidates[l].iter().map(|&r| (r, usize::MAX))).collect();
        for x in 0..nx {
            for y in 0..ny {
                for z in 0..nz {
                    let m = x * sx + y * sy + z;
                    if label(v[m]).is_some_and(|l| candidates[l].len() > 1) {
                        let root = find(&mut parent, m as u32);
                        if let Some(f) = first.get_mut(&root) {
                            *f = (*f).min(x + nx * (y + ny * z));
                        }
                    }
                }
            }
        }
        for &l in &tied {
            winner[l] = *candidates[l].iter().min_by_key(|r| first[r]).expect("candidates");
        }
    }
    let mut out: Vec<f32> = v.to_vec();
    for (m, o) in out.iter_mut().enumerate() {
        if let Some(l) = label(*o)
            && find(&mut parent, m as u32) != winner[l]
        {
            *o = 0.0;
        }
    }
    let data = ndarray::Array3::from_shape_vec((nx, ny, nz), out).expect("shape");
    Volume::new(data, mask.geometry)
}

/// The voxel sizes of every face-connected component of each of `labels` in `mask`, largest
/// first, indexed by label (`sizes[l]` is empty for a label that is absent or not listed).
pub fn component_sizes(mask: &Volume, labels: &[u8]) -> Vec<Vec<u32>> {
    let data = mask.data.as_standard_layout();
    let v = data.as_slice().expect("standard layout");
    let label = label_filter(labels);
    let mut parent = union_components(v, mask.shape(), &label);
    let size = root_sizes(&mut parent, v, &label);
    let mut sizes = vec![Vec::new(); 256];
    for (m, &val) in v.iter().enumerate() {
        if let Some(l) = label(val)
            && parent[m] == m as u32
        {
            sizes[l].push(size[m]);
        }
    }
    for s in &mut sizes {
        s.sort_unstable_by(|a, b| b.cmp(a));
    }
    sizes
}

/// The number of voxels of each component, at its root's index (0 elsewhere); compresses
/// `parent` so that every labelled voxel points at its root.
fn root_sizes(parent: &mut [u32], v: &[f32], label: &impl Fn(f32) -> Option<usize>) -> Vec<u32> {
    let mut size = vec![0u32; v.len()];
    for (m, &val) in v.iter().enumerate() {
        if label(val).is_some() {
            let root = find(parent, m as u32);
            size[root as usize] += 1;
        }
    }
    size
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
/// `<pid>/CTA/CTA_MASK.nii.gz` → `<pid>/CTA/CTA_MASK_connected.nii.gz`, then the mask's
/// quality control (`CTA_MASK_qc.json`; a failing patient fails unless `qc` accepts it).
pub fn connected_cohort(sorted_mask: &Path, labels: &[u8], qc: &QcPolicy) -> Result<StageReport> {
    let dir = |pid: &str| sorted_mask.join(pid).join("CTA");
    for_each_patient("connected", sorted_mask, true, |pid| {
        let output = dir(pid).join(cohort::mask::CONNECTED);
        connected_file(&dir(pid).join(cohort::mask::MASK), &output, labels)?;
        let (figures, _) = qc.check_patient(&dir(pid))?;
        Ok(vec![output, figures])
    })
}

/// The `3.sorted_mask` folder a path names: a cohort root's `3.sorted_mask` when it has
/// one, else the path itself.
pub fn sorted_mask_folder(path: &Path) -> PathBuf {
    let inside = path.join(cohort::SORTED_MASK);
    if inside.is_dir() { inside } else { path.to_path_buf() }
}

/// The pipeline's `connected` stage: `CTA_MASK` → `CTA_MASK_connected` and its quality-control
/// figures (`CTA_MASK_qc.json`); a mask the policy does not admit stops the patient.
#[derive(Debug, Clone)]
pub struct ConnectedStage {
    /// The quality-control ranges, and whether failing masks go on.
    pub qc: QcPolicy,
}

impl PatientStage for ConnectedStage {
    fn settings(&self) -> String {
        format!("labels {DEFAULT_LABELS:?}, qc {}", serde_json::to_string(&self.qc.ranges).expect("ranges serialise"))
    }

    fn patients(&self, c: &Cohort) -> PathBuf {
        c.root.join(cohort::SORTED_MASK)
    }

    fn inputs(&self, c: &Cohort, pid: &str) -> Result<Vec<StagePath>> {
        Ok(vec![StagePath::File(c.mask(pid, cohort::mask::MASK))])
    }

    fn outputs(&self, c: &Cohort, pid: &str) -> Vec<StagePath> {
        vec![StagePath::File(c.mask(pid, cohort::mask::CONNECTED)), StagePath::File(c.mask(pid, cohort::mask::QC))]
    }

    fn run(&self, c: &Cohort, pid: &str) -> Result<StageRun> {
        let (raw, out, figures) = (c.mask(pid, cohort::mask::MASK), c.mask(pid, cohort::mask::CONNECTED), c.mask(pid, cohort::mask::QC));
        connected_file(&raw, &out, &DEFAULT_LABELS)?;
        check_files(&out, Some(&raw), &figures, &self.qc.ranges)?;
        Ok(StageRun { written: vec![out, figures], note: None })
    }

    /// The figures read back (so a skipped stage is judged as a fresh one).
    fn gate(&self, c: &Cohort, pid: &str) -> Result<Option<String>> {
        let qc = MaskQc::read(&c.mask(pid, cohort::mask::QC))?;
        Ok((!self.qc.admits(&qc)).then(|| qc.failures.join("; ")))
    }
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
