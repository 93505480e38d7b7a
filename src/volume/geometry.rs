//! Voxel-to-world geometry in ITK's convention (LPS world, mm).

use super::mat3::{self, Mat3, Vec3};
use serde::{Deserialize, Serialize};

/// Where a voxel grid sits in the world, as ITK/SimpleITK define it.
///
/// The world position of voxel index `(i, j, k)` is
/// `origin + direction · diag(spacing) · (i, j, k)`, in LPS millimetres
/// (x towards the patient's Left, y Posterior, z Superior). Column `c` of `direction`
/// is the unit world direction of voxel axis `c`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Voxel size along each voxel axis, mm (positive).
    pub spacing: Vec3,
    /// World position of the centre of voxel (0, 0, 0), LPS mm.
    pub origin: Vec3,
    /// Direction cosines, `direction[row][col]`; column `col` is voxel axis `col`.
    pub direction: Mat3,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry { spacing: [1.0; 3], origin: [0.0; 3], direction: mat3::IDENTITY }
    }
}

impl Geometry {
    /// A grid with identity direction.
    pub fn axial(spacing: Vec3, origin: Vec3) -> Self {
        Geometry { spacing, origin, direction: mat3::IDENTITY }
    }

    /// The matrix `direction · diag(spacing)` mapping index steps to world steps.
    pub fn index_to_world_matrix(&self) -> Mat3 {
        let mut m = self.direction;
        for row in m.iter_mut() {
            for (c, v) in row.iter_mut().enumerate() {
                *v *= self.spacing[c];
            }
        }
        m
    }

    /// World position (LPS mm) of a continuous voxel index.
    pub fn index_to_world(&self, index: Vec3) -> Vec3 {
        mat3::add(self.origin, mat3::mul_vec(&self.index_to_world_matrix(), index))
    }

    /// Continuous voxel index of a world position; `None` when the direction is singular.
    pub fn world_to_index(&self, world: Vec3) -> Option<Vec3> {
        let inv = mat3::inverse(&self.index_to_world_matrix())?;
        Some(mat3::mul_vec(&inv, mat3::sub(world, self.origin)))
    }

    /// A reusable world→index mapper (inverts the matrix once).
    pub fn world_to_index_fn(&self) -> Option<impl Fn(Vec3) -> Vec3 + Sync + Send + use<>> {
        let inv = mat3::inverse(&self.index_to_world_matrix())?;
        let origin = self.origin;
        Some(move |w: Vec3| mat3::mul_vec(&inv, mat3::sub(w, origin)))
    }

    /// The same grid with its first voxel moved to integer index `start` (may be negative):
    /// the geometry of a crop or pad that begins there.
    pub fn shifted(&self, start: [i64; 3]) -> Geometry {
        Geometry { origin: self.index_to_world(start.map(|v| v as f64)), ..*self }
    }

    /// Largest absolute difference of any spacing, origin or direction component.
    pub fn max_abs_diff(&self, other: &Geometry) -> f64 {
        let mut d: f64 = 0.0;
        for i in 0..3 {
            d = d.max((self.spacing[i] - other.spacing[i]).abs());
            d = d.max((self.origin[i] - other.origin[i]).abs());
            for j in 0..3 {
                d = d.max((self.direction[i][j] - other.direction[i][j]).abs());
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_world_round_trip_on_oblique_grid() {
        let g = Geometry {
            spacing: [0.7, 1.3, 2.5],
            origin: [-10.0, 20.0, 33.0],
            direction: mat3::rotation([0.3, -1.0, 0.5], 0.4),
        };
        let idx = [3.5, -2.0, 7.25];
        let w = g.index_to_world(idx);
        let back = g.world_to_index(w).unwrap();
        for i in 0..3 {
            assert!((back[i] - idx[i]).abs() < 1e-9);
        }
        let shifted = g.shifted([2, -1, 4]);
        let w2 = shifted.index_to_world([1.5, -1.0, 3.25]);
        for i in 0..3 {
            assert!((w2[i] - w[i]).abs() < 1e-9);
        }
    }
}
