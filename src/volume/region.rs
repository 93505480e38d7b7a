//! Crop, pad and flip: re-indexing operations that keep each voxel's world position.

use super::{Geometry, Volume};
use crate::error::{Error, Result};
use ndarray::{Array3, Axis, s};

impl Volume {
    /// The block of `size` voxels whose first voxel is at index `start` of this volume
    /// (`start` may be negative and the block may run past the end): voxels inside this
    /// volume are copied, the rest are `fill`. The origin moves to the block's first voxel,
    /// so every copied voxel keeps its world position. Crop and pad are special cases.
    pub fn extract(&self, start: [i64; 3], size: [usize; 3], fill: f32) -> Volume {
        let shape = self.shape();
        let mut out = Array3::from_elem(size, fill);
        // Overlap of [start, start+size) with [0, shape) along each axis, in source indices.
        let mut src = [(0usize, 0usize); 3];
        let mut dst0 = [0usize; 3];
        let mut empty = false;
        for a in 0..3 {
            let lo = start[a].max(0);
            let hi = (start[a] + size[a] as i64).min(shape[a] as i64);
            if hi <= lo {
                empty = true;
                break;
            }
            src[a] = (lo as usize, hi as usize);
            dst0[a] = (lo - start[a]) as usize;
        }
        if !empty {
            let n = [src[0].1 - src[0].0, src[1].1 - src[1].0, src[2].1 - src[2].0];
            out.slice_mut(s![dst0[0]..dst0[0] + n[0], dst0[1]..dst0[1] + n[1], dst0[2]..dst0[2] + n[2]])
                .assign(&self.data.slice(s![src[0].0..src[0].1, src[1].0..src[1].1, src[2].0..src[2].1]));
        }
        Volume { data: out, geometry: self.geometry.shifted(start) }
    }

    /// The sub-volume `[start, start + size)`; an error when it does not lie inside the volume.
    pub fn crop(&self, start: [usize; 3], size: [usize; 3]) -> Result<Volume> {
        let shape = self.shape();
        for a in 0..3 {
            if size[a] == 0 || start[a] + size[a] > shape[a] {
                return Err(Error::invalid(format!(
                    "crop [{:?} + {:?}) does not fit in a volume of size {:?}",
                    start, size, shape
                )));
            }
        }
        Ok(self.extract(start.map(|v| v as i64), size, 0.0))
    }

    /// The volume with `before[a]` voxels of `fill` added before and `after[a]` after each axis.
    pub fn pad(&self, before: [usize; 3], after: [usize; 3], fill: f32) -> Volume {
        let shape = self.shape();
        let size = [0, 1, 2].map(|a| shape[a] + before[a] + after[a]);
        self.extract(before.map(|v| -(v as i64)), size, fill)
    }

    /// The centred block of `size`: cropped where the volume is larger, padded with `fill`
    /// where it is smaller (the extra voxel of an odd difference goes after, as TorchIO's
    /// CropOrPad does).
    pub fn center_crop_or_pad(&self, size: [usize; 3], fill: f32) -> Volume {
        let shape = self.shape();
        let start = [0, 1, 2].map(|a| {
            let diff = shape[a] as i64 - size[a] as i64;
            if diff >= 0 { diff / 2 } else { -((-diff) / 2) }
        });
        self.extract(start, size, fill)
    }

    /// The volume re-indexed with axis `axis` reversed. The direction column of that axis
    /// is negated and the origin moves to the former last voxel, so the world position of
    /// every voxel (and so the image a viewer shows) is unchanged.
    pub fn flip(&self, axis: usize) -> Volume {
        assert!(axis < 3, "axis must be 0, 1 or 2");
        let mut data = self.data.clone();
        data.invert_axis(Axis(axis));
        let mut last = [0i64; 3];
        last[axis] = self.shape()[axis] as i64 - 1;
        let mut geometry: Geometry = self.geometry.shifted(last);
        for row in geometry.direction.iter_mut() {
            row[axis] = -row[axis];
        }
        Volume { data, geometry }
    }

    /// Inclusive index bounding box `(min, max)` of the voxels where `keep` holds, or `None`.
    pub fn bounding_box(&self, keep: impl Fn(f32) -> bool) -> Option<([usize; 3], [usize; 3])> {
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        let mut any = false;
        for ((x, y, z), &v) in self.data.indexed_iter() {
            if keep(v) {
                any = true;
                for (a, i) in [x, y, z].into_iter().enumerate() {
                    lo[a] = lo[a].min(i);
                    hi[a] = hi[a].max(i);
                }
            }
        }
        any.then_some((lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::mat3;

    fn ramp() -> Volume {
        let data = Array3::from_shape_fn([5, 4, 3], |(x, y, z)| (x * 100 + y * 10 + z) as f32);
        let geometry = Geometry {
            spacing: [0.5, 1.5, 2.0],
            origin: [10.0, -5.0, 3.0],
            direction: mat3::rotation([1.0, 1.0, 0.0], 0.3),
        };
        Volume::new(data, geometry)
    }

    fn assert_close(a: [f64; 3], b: [f64; 3]) {
        for i in 0..3 {
            assert!((a[i] - b[i]).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn crop_moves_origin_and_keeps_world_positions() {
        let v = ramp();
        let c = v.crop([1, 2, 1], [3, 2, 2]).unwrap();
        assert_eq!(c.data[[0, 0, 0]], 121.0);
        assert_close(c.geometry.index_to_world([0.0; 3]), v.geometry.index_to_world([1.0, 2.0, 1.0]));
        assert!(v.crop([3, 0, 0], [3, 1, 1]).is_err());
    }

    #[test]
    fn pad_fills_and_keeps_world_positions() {
        let v = ramp();
        let p = v.pad([2, 0, 1], [1, 1, 0], -1024.0);
        assert_eq!(p.shape(), [8, 5, 4]);
        assert_eq!(p.data[[0, 0, 0]], -1024.0);
        assert_eq!(p.data[[2, 0, 1]], 0.0);
        assert_eq!(p.data[[6, 3, 3]], 432.0);
        assert_close(p.geometry.index_to_world([2.0, 0.0, 1.0]), v.geometry.origin);
    }

    #[test]
    fn center_crop_or_pad_mixes_both() {
        let v = ramp();
        let b = v.center_crop_or_pad([3, 6, 3], 7.0);
        // x cropped by 2 (start 1), y padded by 2 (one before).
        assert_eq!(b.data[[0, 0, 0]], 7.0);
        assert_eq!(b.data[[0, 1, 0]], 100.0);
        assert_close(b.geometry.index_to_world([0.0, 1.0, 0.0]), v.geometry.index_to_world([1.0, 0.0, 0.0]));
    }

    #[test]
    fn flip_keeps_world_positions() {
        let v = ramp();
        let f = v.flip(1);
        assert_eq!(f.data[[2, 0, 1]], v.data[[2, 3, 1]]);
        assert_close(f.geometry.index_to_world([2.0, 0.0, 1.0]), v.geometry.index_to_world([2.0, 3.0, 1.0]));
        let back = f.flip(1);
        assert_eq!(back.data, v.data);
        assert!(back.geometry.max_abs_diff(&v.geometry) < 1e-9);
    }

    #[test]
    fn bounding_box_is_inclusive() {
        let v = ramp();
        assert_eq!(v.bounding_box(|x| x >= 310.0 && x <= 421.0), Some(([3, 0, 0], [4, 3, 2])));
        assert_eq!(v.bounding_box(|x| x > 1e6), None);
    }
}
