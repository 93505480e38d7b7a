//! Resampling a volume onto another grid, optionally through a spatial transform.

use super::{Geometry, Volume, mat3::Vec3};
use ndarray::{Array3, Zip};

/// How values between voxel centres are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Value of the nearest voxel (for label maps).
    Nearest,
    /// Trilinear interpolation of the 8 surrounding voxels.
    Linear,
}

/// Which continuous indices a [`Trilinear`] cell counts as inside a grid of `n` voxels per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// ITK's "inside": within half a voxel of the grid, `[−½, n − ½]`; the border voxels stand
    /// in for missing neighbours (resampling outputs).
    HalfVoxel,
    /// The box of voxel centres, `[0, n − 1]`, where all 8 neighbours exist (registration's
    /// moving image, whose value and gradient must not be extrapolated).
    VoxelCentres,
}

/// The cell of trilinear interpolation at a continuous index: the lower and upper neighbour
/// and the fraction towards the upper one, per axis. The one interpolator of the crate: both
/// [`Volume::sample`] and registration locate their cells here, with their [`Boundary`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trilinear {
    /// Lower neighbour per axis.
    pub lo: [usize; 3],
    /// Upper neighbour per axis (equal to `lo` on a repeated border).
    pub hi: [usize; 3],
    /// Weight of `hi` per axis (`1 − t` is the weight of `lo`).
    pub t: [f64; 3],
}

impl Trilinear {
    /// The cell at continuous index `index` of a grid of `shape`, or `None` outside `boundary`.
    pub fn locate(index: Vec3, shape: [usize; 3], boundary: Boundary) -> Option<Trilinear> {
        let mut cell = Trilinear { lo: [0; 3], hi: [0; 3], t: [0.0; 3] };
        for a in 0..3 {
            let (u, n) = (index[a], shape[a]);
            match boundary {
                Boundary::HalfVoxel => {
                    if !(u >= -0.5 && u <= n as f64 - 0.5) {
                        return None;
                    }
                    let f = u.floor();
                    cell.t[a] = u - f;
                    let last = n as i64 - 1;
                    cell.lo[a] = (f as i64).clamp(0, last) as usize;
                    cell.hi[a] = (f as i64 + 1).clamp(0, last) as usize;
                }
                Boundary::VoxelCentres => {
                    if !(u >= 0.0 && u <= (n - 1) as f64) || n < 2 {
                        return None;
                    }
                    let f = (u.floor() as usize).min(n - 2);
                    cell.lo[a] = f;
                    cell.hi[a] = f + 1;
                    cell.t[a] = u - f as f64;
                }
            }
        }
        Some(cell)
    }

    /// The 8 voxels and their weights (z outermost, then y, then x): the form resampling sums.
    pub fn weights(&self) -> ([[usize; 3]; 8], [f64; 8]) {
        let (lo, hi, t) = (self.lo, self.hi, self.t);
        let mut corners = [[0usize; 3]; 8];
        let mut weights = [0.0; 8];
        let mut n = 0;
        for (cz, wz) in [(lo[2], 1.0 - t[2]), (hi[2], t[2])] {
            for (cy, wy) in [(lo[1], 1.0 - t[1]), (hi[1], t[1])] {
                for (cx, wx) in [(lo[0], 1.0 - t[0]), (hi[0], t[0])] {
                    corners[n] = [cx, cy, cz];
                    weights[n] = wx * wy * wz;
                    n += 1;
                }
            }
        }
        (corners, weights)
    }

    /// The interpolated value of `N` channels, `fetch` giving the channels of a voxel: the 4
    /// (x, y) corners weighted `wx·wy`, each a linear blend along z (the form registration's
    /// moving image sums). The same interpolant as [`weights`](Self::weights), rounded in
    /// another order: each caller keeps its own so that outputs stay the same bit for bit.
    pub fn blend<const N: usize>(&self, fetch: impl Fn([usize; 3]) -> [f32; N]) -> [f64; N] {
        let (lo, hi, t) = (self.lo, self.hi, self.t);
        let mut acc = [0.0f64; N];
        for (x, wx) in [(lo[0], 1.0 - t[0]), (hi[0], t[0])] {
            for (y, wy) in [(lo[1], 1.0 - t[1]), (hi[1], t[1])] {
                let w = wx * wy;
                let (a, b) = (fetch([x, y, lo[2]]), fetch([x, y, hi[2]]));
                for c in 0..N {
                    acc[c] += w * ((1.0 - t[2]) * a[c] as f64 + t[2] * b[c] as f64);
                }
            }
        }
        acc
    }
}

impl Volume {
    /// Value at continuous voxel index `index`. Points within half a voxel of the grid
    /// (as ITK counts "inside") are interpolated, using the border voxels where a neighbour
    /// is missing; points further out give `fill`.
    pub fn sample(&self, index: Vec3, interpolation: Interpolation, fill: f32) -> f32 {
        let shape = self.shape();
        let Some(cell) = Trilinear::locate(index, shape, Boundary::HalfVoxel) else { return fill };
        match interpolation {
            Interpolation::Nearest => {
                let i = [0, 1, 2].map(|a| (index[a].round().max(0.0) as usize).min(shape[a] - 1));
                self.data[i]
            }
            Interpolation::Linear => {
                let (corners, weights) = cell.weights();
                let mut acc = 0.0f64;
                for (c, &w) in corners.iter().zip(&weights) {
                    if w != 0.0 {
                        acc += w * self.data[*c] as f64;
                    }
                }
                acc as f32
            }
        }
    }

    /// Resample onto the grid (`shape`, `geometry`): output voxel at world point `p` takes
    /// this volume's value at world point `transform(p)` (ITK's convention: the transform
    /// maps output-grid points into this volume's space). Runs in parallel over voxels.
    pub fn resample(
        &self,
        shape: [usize; 3],
        geometry: &Geometry,
        transform: impl Fn(Vec3) -> Vec3 + Sync,
        interpolation: Interpolation,
        fill: f32,
    ) -> Volume {
        let to_index = self
            .geometry
            .world_to_index_fn()
            .expect("a volume's direction·spacing matrix is invertible");
        let m = geometry.index_to_world_matrix();
        let origin = geometry.origin;
        let mut out = Array3::from_elem(shape, fill);
        Zip::indexed(&mut out).par_for_each(|(i, j, k), v| {
            let idx = [i as f64, j as f64, k as f64];
            let p = [0, 1, 2].map(|r| origin[r] + m[r][0] * idx[0] + m[r][1] * idx[1] + m[r][2] * idx[2]);
            *v = self.sample(to_index(transform(p)), interpolation, fill);
        });
        Volume { data: out, geometry: *geometry }
    }

    /// Resample onto another grid with no transform (world positions matched as they are).
    pub fn resample_to_grid(
        &self,
        shape: [usize; 3],
        geometry: &Geometry,
        interpolation: Interpolation,
        fill: f32,
    ) -> Volume {
        self.resample(shape, geometry, |p| p, interpolation, fill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::mat3;

    #[test]
    fn linear_sampling_reproduces_a_linear_function() {
        let g = Geometry { spacing: [1.0, 2.0, 0.5], origin: [1.0, 2.0, 3.0], direction: mat3::rotation([0.0, 0.0, 1.0], 0.2) };
        let f = |p: Vec3| (2.0 * p[0] - p[1] + 0.5 * p[2]) as f32;
        let shape = [8, 8, 8];
        let mut data = Array3::zeros(shape);
        for ((i, j, k), v) in data.indexed_iter_mut() {
            *v = f(g.index_to_world([i as f64, j as f64, k as f64]));
        }
        let vol = Volume::new(data, g);
        // A finer grid inside the source.
        let fine = Geometry { spacing: [0.5, 0.5, 0.5], origin: g.index_to_world([2.0, 2.0, 2.0]), direction: g.direction };
        let out = vol.resample_to_grid([6, 6, 6], &fine, Interpolation::Linear, -1.0);
        for ((i, j, k), &v) in out.data.indexed_iter() {
            let expect = f(fine.index_to_world([i as f64, j as f64, k as f64]));
            assert!((v - expect).abs() < 1e-3, "{v} vs {expect}");
        }
    }

    #[test]
    fn outside_points_get_fill_and_nearest_rounds() {
        let vol = Volume::new(Array3::from_shape_fn([3, 3, 3], |(x, y, z)| (x + 3 * y + 9 * z) as f32), Geometry::default());
        assert_eq!(vol.sample([-0.6, 0.0, 0.0], Interpolation::Linear, -7.0), -7.0);
        assert_eq!(vol.sample([2.4, 0.0, 0.0], Interpolation::Linear, -7.0), 2.0);
        assert_eq!(vol.sample([1.6, 0.4, 1.5], Interpolation::Nearest, -7.0), (2 + 0 + 18) as f32);
        // A shifted resample through a translation transform.
        let out = vol.resample([3, 3, 3], &Geometry::default(), |p| [p[0] + 1.0, p[1], p[2]], Interpolation::Nearest, -7.0);
        assert_eq!(out.data[[0, 1, 1]], vol.data[[1, 1, 1]]);
        assert_eq!(out.data[[2, 1, 1]], -7.0);
    }
}
