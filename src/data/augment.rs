//! Seeded augmentation of a training case (docs/design.md §4, after the reference's TorchIO list):
//! random flip on each axis, random anisotropy, random (else centred) crop-or-pad to the crop
//! size, Gaussian blur and Gaussian noise on the input only. Masks are resampled by nearest
//! neighbour; the target is never blurred or noised. The same steps augment a segmentation
//! case (image and label map, [`augment_labelled`]), where flips can be limited to some axes so
//! that left and right never swap.

use super::batch::Sample;
use crate::volume::Volume;
use ndarray::{Array3, Axis};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Probabilities and ranges of the augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Apply any augmentation at all (else: centred crop-or-pad only).
    pub enabled: bool,
    /// Probability of flipping each axis.
    pub flip: f64,
    /// The axes (x, y, z) that may be flipped at all.
    pub flip_axes: [bool; 3],
    /// Largest random translation, voxels per axis, added to a randomly placed window
    /// (0: none; the window of a volume no larger than the crop then never moves).
    pub max_shift: usize,
    /// Probability of simulating a coarser resolution along one random axis.
    pub anisotropy: f64,
    /// Range of the down-sampling factor of the anisotropy.
    pub anisotropy_factor: [f64; 2],
    /// Probability that the crop-or-pad window is placed at random (else centred).
    pub random_crop: f64,
    /// Probability that the window is instead centred on a random non-zero voxel of the
    /// mask (nnU-Net's foreground over-sampling, 0.33 there), kept inside the volume where it
    /// fits; needs a mask, 0 draws nothing.
    pub foreground: f64,
    /// Probability of blurring the input.
    pub blur: f64,
    /// Range of the blur's standard deviation, mm, drawn per axis.
    pub blur_std_mm: [f64; 2],
    /// Probability of adding Gaussian noise to the input.
    pub noise: f64,
    /// Range of the noise's standard deviation, in input units (HU).
    pub noise_std: [f64; 2],
    /// Value of padded input and target voxels (masks pad with 0).
    pub pad_value: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flip: 0.5,
            flip_axes: [true; 3],
            max_shift: 0,
            anisotropy: 0.25,
            anisotropy_factor: [1.0, 2.5],
            random_crop: 0.8,
            foreground: 0.0,
            blur: 0.25,
            blur_std_mm: [0.0, 2.0],
            noise: 0.25,
            noise_std: [0.0, 20.0],
            pad_value: -1024.0,
        }
    }
}

impl AugmentConfig {
    /// Check probabilities and ranges.
    pub fn validate(&self) -> crate::Result<()> {
        for (name, p) in [("flip", self.flip), ("anisotropy", self.anisotropy), ("random_crop", self.random_crop), ("foreground", self.foreground), ("blur", self.blur), ("noise", self.noise)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(crate::Error::invalid(format!("augment.{name} is a probability, got {p}")));
            }
        }
        for (name, r, min) in [("anisotropy_factor", self.anisotropy_factor, 1.0), ("blur_std_mm", self.blur_std_mm, 0.0), ("noise_std", self.noise_std, 0.0)] {
            if !(r[0] >= min && r[1] >= r[0] && r[1].is_finite()) {
                return Err(crate::Error::invalid(format!("augment.{name} must be an increasing range from at least {min}, got {r:?}")));
            }
        }
        Ok(())
    }
}

/// Fit a case to `size` without randomness: centred crop-or-pad.
pub fn center(sample: Sample, size: [usize; 3], pad_value: f32) -> Sample {
    let start = centred_start(sample.src.shape(), size);
    place(sample, start, size, pad_value)
}

/// Augment a case and fit it to `size`, drawing every choice from `rng`.
pub fn augment(s: Sample, size: [usize; 3], cfg: &AugmentConfig, rng: &mut impl Rng) -> Sample {
    if !cfg.enabled {
        return center(s, size, cfg.pad_value);
    }
    let mut set = Aligned { images: vec![s.src, s.dst], labels: s.mask.into_iter().collect() };
    set.spatial(size, cfg, rng);
    let (mut images, mut labels) = (set.images.into_iter(), set.labels.into_iter());
    let mut src = images.next().expect("input");
    let dst = images.next().expect("target");
    corrupt(&mut src, cfg, rng);
    Sample { pid: s.pid, src, dst, mask: labels.next() }
}

/// Augment an image and its label map and fit both to `size`: the spatial steps move both
/// (labels by nearest neighbour, padded with 0), blur and noise touch the image only.
pub fn augment_labelled(image: Volume, labels: Volume, size: [usize; 3], cfg: &AugmentConfig, rng: &mut impl Rng) -> (Volume, Volume) {
    let mut set = Aligned { images: vec![image], labels: vec![labels] };
    if cfg.enabled {
        set.spatial(size, cfg, rng);
    } else {
        set.place(centred_start(set.images[0].shape(), size), size, cfg.pad_value);
    }
    let (mut image, labels) = (set.images.pop().expect("image"), set.labels.pop().expect("labels"));
    if cfg.enabled {
        corrupt(&mut image, cfg, rng);
    }
    (image, labels)
}

/// Volumes on one grid transformed together: images interpolate linearly and pad with the
/// configured value, label maps use nearest neighbour and pad with 0.
struct Aligned {
    images: Vec<Volume>,
    labels: Vec<Volume>,
}

impl Aligned {
    /// Flips, anisotropy, and the random (else centred) crop-or-pad window.
    fn spatial(&mut self, size: [usize; 3], cfg: &AugmentConfig, rng: &mut impl Rng) {
        for axis in 0..3 {
            if rng.random_bool(cfg.flip) && cfg.flip_axes[axis] {
                for v in self.images.iter_mut().chain(self.labels.iter_mut()) {
                    *v = v.flip(axis);
                }
            }
        }
        if rng.random_bool(cfg.anisotropy) {
            let axis = rng.random_range(0..3);
            let factor = uniform(rng, cfg.anisotropy_factor);
            let n = self.images[0].shape()[axis];
            let low = ((n as f64 / factor).round() as usize).clamp(1, n);
            for v in &mut self.images {
                v.data = coarsen(&v.data, axis, low, false);
            }
            for v in &mut self.labels {
                v.data = coarsen(&v.data, axis, low, true);
            }
        }
        let shape = self.images[0].shape();
        let centre = if cfg.foreground > 0.0 && rng.random_bool(cfg.foreground) { self.random_foreground_voxel(rng) } else { None };
        let start = if let Some(c) = centre {
            [0, 1, 2].map(|k| {
                let (n, s) = (shape[k] as i64, size[k] as i64);
                (c[k] as i64 - s / 2).clamp((n - s).min(0), (n - s).max(0))
            })
        } else if rng.random_bool(cfg.random_crop) {
            let mut start = [0i64; 3];
            for k in 0..3 {
                let (n, c) = (shape[k] as i64, size[k] as i64);
                start[k] = if n >= c { rng.random_range(0..=n - c) } else { -rng.random_range(0..=c - n) };
                if cfg.max_shift > 0 {
                    let m = cfg.max_shift as i64;
                    start[k] += rng.random_range(-m..=m);
                }
            }
            start
        } else {
            centred_start(shape, size)
        };
        self.place(start, size, cfg.pad_value);
    }

    /// A voxel drawn uniformly among the non-zero voxels of the first label map.
    fn random_foreground_voxel(&self, rng: &mut impl Rng) -> Option<[usize; 3]> {
        let mask = self.labels.first()?;
        let count = mask.data.iter().filter(|&&v| v != 0.0).count();
        if count == 0 {
            return None;
        }
        let pick = rng.random_range(0..count);
        mask.data.indexed_iter().filter(|(_, v)| **v != 0.0).nth(pick).map(|((i, j, k), _)| [i, j, k])
    }

    fn place(&mut self, start: [i64; 3], size: [usize; 3], pad_value: f32) {
        for v in &mut self.images {
            *v = v.extract(start, size, pad_value);
        }
        for v in &mut self.labels {
            *v = v.extract(start, size, 0.0);
        }
    }
}

/// Gaussian blur and Gaussian noise of the network input, each with its probability.
fn corrupt(src: &mut Volume, cfg: &AugmentConfig, rng: &mut impl Rng) {
    if rng.random_bool(cfg.blur) {
        let sigma = [uniform(rng, cfg.blur_std_mm), uniform(rng, cfg.blur_std_mm), uniform(rng, cfg.blur_std_mm)];
        *src = src.gaussian_blur(sigma);
    }
    if rng.random_bool(cfg.noise) {
        let std = uniform(rng, cfg.noise_std);
        if std > 0.0 {
            let normal = Normal::new(0.0, std).expect("finite std");
            src.data.mapv_inplace(|v| v + normal.sample(rng) as f32);
        }
    }
}

fn uniform(rng: &mut impl Rng, r: [f64; 2]) -> f64 {
    if r[1] > r[0] { rng.random_range(r[0]..r[1]) } else { r[0] }
}

fn centred_start(shape: [usize; 3], size: [usize; 3]) -> [i64; 3] {
    // The same rounding as `Volume::center_crop_or_pad`.
    [0, 1, 2].map(|k| (shape[k] as i64 - size[k] as i64).div_euclid(2))
}

fn place(s: Sample, start: [i64; 3], size: [usize; 3], pad_value: f32) -> Sample {
    Sample {
        pid: s.pid,
        src: s.src.extract(start, size, pad_value),
        dst: s.dst.extract(start, size, pad_value),
        mask: s.mask.map(|m| m.extract(start, size, 0.0)),
    }
}

/// Down-sample `a` along `axis` to `low` samples and back (voxel-centre aligned), linearly or
/// by nearest neighbour: a coarser acquisition seen on the original grid.
fn coarsen(a: &Array3<f32>, axis: usize, low: usize, nearest: bool) -> Array3<f32> {
    let n = a.shape()[axis];
    if low == n {
        return a.clone();
    }
    resample_axis(&resample_axis(a, axis, low, nearest), axis, n, nearest)
}

fn resample_axis(a: &Array3<f32>, axis: usize, n_out: usize, nearest: bool) -> Array3<f32> {
    let n_in = a.shape()[axis];
    let mut shape = [a.shape()[0], a.shape()[1], a.shape()[2]];
    shape[axis] = n_out;
    let mut out = Array3::<f32>::zeros(shape);
    let scale = n_in as f64 / n_out as f64;
    for i in 0..n_out {
        let s = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
        let mut lane = out.index_axis_mut(Axis(axis), i);
        if nearest {
            lane.assign(&a.index_axis(Axis(axis), s.round() as usize));
        } else {
            let i0 = s.floor() as usize;
            let i1 = (i0 + 1).min(n_in - 1);
            let w = (s - i0 as f64) as f32;
            let (p0, p1) = (a.index_axis(Axis(axis), i0), a.index_axis(Axis(axis), i1));
            ndarray::Zip::from(&mut lane).and(&p0).and(&p1).for_each(|o, &x0, &x1| *o = x0 + (x1 - x0) * w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, Volume};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn sample(shape: [usize; 3]) -> Sample {
        let g = Geometry::axial([1.0, 1.0, 2.0], [0.0, 0.0, 0.0]);
        let src = Volume::new(Array3::from_shape_fn(shape, |(i, j, k)| (i * 100 + j * 10 + k) as f32), g.clone());
        let dst = src.map(|v| v * 0.5);
        let mask = src.map(|v| if (v as usize) % 3 == 0 { 1.0 } else { 0.0 });
        Sample { pid: "p".into(), src, dst, mask: Some(mask) }
    }

    #[test]
    fn output_has_the_crop_size_and_target_stays_clean() {
        let cfg = AugmentConfig { blur: 1.0, noise: 1.0, noise_std: [5.0, 10.0], ..Default::default() };
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let s = augment(sample([12, 9, 7]), [8, 8, 8], &cfg, &mut rng);
            assert_eq!(s.src.shape(), [8, 8, 8]);
            assert_eq!(s.dst.shape(), [8, 8, 8]);
            let m = s.mask.unwrap();
            // Masks stay binary (nearest neighbour, zero padding).
            assert!(m.data.iter().all(|&v| v == 0.0 || v == 1.0));
        }
    }

    #[test]
    fn same_seed_same_result() {
        let cfg = AugmentConfig::default();
        let a = augment(sample([10, 10, 10]), [8, 8, 8], &cfg, &mut ChaCha8Rng::seed_from_u64(9));
        let b = augment(sample([10, 10, 10]), [8, 8, 8], &cfg, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a.src.data, b.src.data);
        assert_eq!(a.dst.data, b.dst.data);
    }

    #[test]
    fn without_augmentation_it_centres() {
        let cfg = AugmentConfig { enabled: false, ..Default::default() };
        let s = augment(sample([10, 6, 8]), [8, 8, 8], &cfg, &mut ChaCha8Rng::seed_from_u64(1));
        // x cropped by 1 at the start, y padded by 1 at the start.
        assert_eq!(s.src.data[[0, 1, 0]], 100.0);
        assert_eq!(s.src.data[[0, 0, 0]], -1024.0);
        assert_eq!(s.mask.unwrap().data[[0, 0, 0]], 0.0);
    }

    #[test]
    fn flips_and_blur_leave_the_target_unblurred() {
        // With blur and noise certain and no flips/anisotropy, the target equals the centred crop.
        let cfg = AugmentConfig { flip: 0.0, anisotropy: 0.0, random_crop: 0.0, blur: 1.0, noise: 1.0, ..Default::default() };
        let s = augment(sample([8, 8, 8]), [8, 8, 8], &cfg, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(s.dst.data, sample([8, 8, 8]).dst.data);
        assert_ne!(s.src.data, sample([8, 8, 8]).src.data);
    }

    #[test]
    fn foreground_windows_contain_the_mask() {
        // One mask voxel in a corner of a large volume: every foreground-centred window holds it.
        let g = Geometry::axial([1.0; 3], [0.0; 3]);
        let src = Volume::new(Array3::zeros((40, 30, 20)), g.clone());
        let mut mask = src.clone();
        mask.data[[35, 3, 17]] = 1.0;
        let cfg = AugmentConfig { foreground: 1.0, flip: 0.0, anisotropy: 0.0, blur: 0.0, noise: 0.0, ..Default::default() };
        for seed in 0..5 {
            let s = Sample { pid: "p".into(), src: src.clone(), dst: src.clone(), mask: Some(mask.clone()) };
            let out = augment(s, [16, 16, 8], &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(out.mask.unwrap().data.iter().filter(|&&v| v == 1.0).count(), 1, "seed {seed}");
        }
        // Without a mask voxel the window falls back to the other placements.
        let s = Sample { pid: "p".into(), src: src.clone(), dst: src.clone(), mask: Some(src.clone()) };
        assert_eq!(augment(s, [16, 16, 8], &cfg, &mut ChaCha8Rng::seed_from_u64(0)).src.shape(), [16, 16, 8]);
    }

    #[test]
    fn coarsening_keeps_labels_and_constant_images() {
        let a = Array3::from_elem((6, 5, 4), 3.0f32);
        assert_eq!(coarsen(&a, 1, 2, false), a);
        let l = Array3::from_shape_fn((9, 2, 2), |(i, _, _)| (i / 3) as f32);
        let c = coarsen(&l, 0, 4, true);
        assert!(c.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
    }

    #[test]
    fn labelled_augmentation_keeps_labels_and_never_flips_a_forbidden_axis() {
        let cfg = AugmentConfig { flip: 1.0, flip_axes: [false, true, true], max_shift: 2, anisotropy: 0.0, blur: 1.0, noise: 1.0, ..Default::default() };
        let image = sample([8, 6, 4]).src;
        let labels = image.map(|v| ((v as usize) % 4) as f32);
        for seed in 0..10 {
            let (img, lab) = augment_labelled(image.clone(), labels.clone(), [8, 6, 4], &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(img.shape(), [8, 6, 4]);
            assert!(lab.data.iter().all(|v| [0.0, 1.0, 2.0, 3.0].contains(v)));
            // y and z always flip, x never: where the label map is not padding, the voxel at
            // (i, j, k) came from (i + dx, 5 − j + dy, 3 − k + dz) for one shift (dx, dy, dz).
            let found = (-2i64..=2).any(|dx| {
                (-2i64..=2).any(|dy| {
                    (-2i64..=2).any(|dz| {
                        lab.data.indexed_iter().all(|((i, j, k), &v)| {
                            let (x, y, z) = (i as i64 + dx, 5 - (j as i64 + dy), 3 - (k as i64 + dz));
                            let inside = (0..8).contains(&x) && (0..6).contains(&y) && (0..4).contains(&z);
                            !inside || v == labels.data[[x as usize, y as usize, z as usize]]
                        })
                    })
                })
            });
            assert!(found, "seed {seed}: labels are not a y/z flip plus a shift of the input");
        }
    }
}
