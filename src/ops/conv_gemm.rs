//! A cubic 3-D convolution and both of its gradients on the CPU, as tiles of im2col + GEMM
//! (the `gemm` crate, one thread per tile): the three products a training step needs.
//!
//! For one batch item, with the input `x` as `[c_in, X, Y, Z]`, the output `y` as
//! `[c_out, OX, OY, OZ]` and the weights `w` as `[c_out, c_in·k³]` (PyTorch's layout), the
//! columns of a tile of output x planes are `cols[(ci, kx, ky, kz)][n] = x[ci, ox·s+kx−p, …]`
//! (zero outside), and
//! - [`forward`]: `y[:, tile] = w · cols`;
//! - [`input_grad`]: `dx += col2im(wᵀ · dy[:, tile])` (the transposed convolution);
//! - [`weight_grad`]: `dw += dy[:, tile] · colsᵀ`.
//!
//! A transposed convolution is the input gradient of the convolution it reverses, so the same
//! three products give it too (`crate::ops::conv_cpu`). A tile is whole output x planes: as
//! many as fit in [`TILE_FLOATS`] columns, but at least one, so a tile's columns are at most
//! `max(TILE_FLOATS, one plane)` — one plane is `c_in·k³ × oy·oz` floats, 53 MB for the first
//! stride-2 layer of the ngf-32 generator at 384×384×160 — and each thread keeps one such
//! buffer; tiles run in parallel on rayon's pool. The tiles and the order their sums meet do
//! not depend on the number of threads, so a result is the same bit for bit on any machine
//! with the same instruction set.

use super::buffer::{SharedMut, filled_by};
use super::direct_conv::conv3d_direct;
use super::direct_weight_grad::{self, weight_grad_direct};
use rayon::prelude::*;

/// About how many floats one tile's columns may hold (16 MiB).
const TILE_FLOATS: usize = 4 << 20;

/// Tiles a volume is cut into at least, when it has the planes (two per thread of an
/// 8-thread pool), and the most partial weight gradients kept. A constant rather than the
/// pool's size, so that the tiles, and the order in which the input and weight gradients sum
/// their parts, are the same whatever the threads.
const MIN_TILES: usize = 16;

/// The geometry of one cubic convolution, batch item by batch item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size on every axis.
    pub k: usize,
    /// Stride on every axis.
    pub stride: usize,
    /// Zero padding on each side of every axis.
    pub padding: usize,
    /// Input size (x, y, z).
    pub input: [usize; 3],
}

impl Geometry {
    /// Output size (x, y, z).
    pub fn output(&self) -> [usize; 3] {
        self.input.map(|n| (n + 2 * self.padding - self.k) / self.stride + 1)
    }

    /// Rows of the column matrix: `c_in · k³`.
    fn taps(&self) -> usize {
        self.c_in * self.k * self.k * self.k
    }

    fn input_len(&self) -> usize {
        self.c_in * self.input.iter().product::<usize>()
    }

    fn output_len(&self) -> usize {
        self.c_out * self.output().iter().product::<usize>()
    }

    /// A 1³ stride-1 convolution without padding: its columns are the input itself.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// The same convolution read backwards at stride 1: from the output grid (`c_out`
    /// channels) to the input grid, padding `k − 1 − p`. Its forward pass with the flipped,
    /// transposed kernel is this one's input gradient.
    fn reversed(&self) -> Geometry {
        debug_assert!(self.stride == 1 && self.padding < self.k);
        Geometry { c_in: self.c_out, c_out: self.c_in, k: self.k, stride: 1, padding: self.k - 1 - self.padding, input: self.output() }
    }

    /// Output x planes per tile: as many as [`TILE_FLOATS`] allows, at least `min`, and few
    /// enough that there are [`MIN_TILES`] tiles when the volume allows it.
    fn planes_per_tile(&self, min: usize) -> usize {
        let [ox, oy, oz] = self.output();
        let per_plane = self.taps() * oy * oz;
        let by_memory = (TILE_FLOATS / per_plane.max(1)).max(1);
        let by_balance = ox.div_ceil(MIN_TILES).max(1);
        by_memory.min(by_balance).max(min).min(ox)
    }
}

/// `w` reordered as the kernel of [`Geometry::reversed`]: `[c_in, c_out, k³]`, taps flipped.
fn reversed_kernel(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let t = g.k * g.k * g.k;
    let mut out = vec![0f32; w.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for tap in 0..t {
                out[(ci * g.c_out + co) * t + (t - 1 - tap)] = w[(co * g.c_in + ci) * t + tap];
            }
        }
    }
    out
}

/// The columns of output x planes `planes` into `cols` (`[c_in·k³][planes·OY·OZ]`).
fn im2col(g: &Geometry, x: &[f32], planes: std::ops::Range<usize>, cols: &mut [f32]) {
    let [nx, ny, nz] = g.input;
    let [_, oy, oz] = g.output();
    let (k, s, p) = (g.k, g.stride, g.padding);
    let width = planes.len() * oy * oz;
    debug_assert_eq!(cols.len(), g.taps() * width);
    for (row_index, row) in cols.chunks_mut(width).enumerate() {
        let (ci, kx, ky, kz) = (row_index / (k * k * k), row_index / (k * k) % k, row_index / k % k, row_index % k);
        let channel = &x[ci * nx * ny * nz..][..nx * ny * nz];
        // Output z whose input z = oz·s + kz − p lies inside: [z_lo, z_hi).
        let z_lo = p.saturating_sub(kz).div_ceil(s).min(oz);
        let z_hi = if nz + p > kz { ((nz + p - kz - 1) / s + 1).min(oz) } else { 0 }.max(z_lo);
        for (i, ox) in planes.clone().enumerate() {
            let plane = &mut row[i * oy * oz..][..oy * oz];
            let ix = (ox * s + kx) as isize - p as isize;
            if ix < 0 || ix >= nx as isize {
                plane.fill(0.0);
                continue;
            }
            for (y, run) in plane.chunks_mut(oz).enumerate() {
                let iy = (y * s + ky) as isize - p as isize;
                if iy < 0 || iy >= ny as isize {
                    run.fill(0.0);
                    continue;
                }
                let src = &channel[(ix as usize * ny + iy as usize) * nz..][..nz];
                run[..z_lo].fill(0.0);
                run[z_hi..].fill(0.0);
                if z_lo == z_hi {
                    continue;
                }
                let first = z_lo * s + kz - p;
                if s == 1 {
                    run[z_lo..z_hi].copy_from_slice(&src[first..first + z_hi - z_lo]);
                } else {
                    for (j, v) in run[z_lo..z_hi].iter_mut().enumerate() {
                        *v = src[first + j * s];
                    }
                }
            }
        }
    }
}

/// The transpose of [`im2col`]: adds the columns of output x planes `planes` into `x`.
///
/// # Safety
/// `x` points at `g.input_len()` floats that no other thread touches in the input x planes
/// these output planes read.
unsafe fn col2im_add(g: &Geometry, cols: &[f32], planes: std::ops::Range<usize>, x: *mut f32) {
    let [nx, ny, nz] = g.input;
    let [_, oy, oz] = g.output();
    let (k, s, p) = (g.k, g.stride, g.padding);
    let width = planes.len() * oy * oz;
    for (row_index, row) in cols.chunks(width).enumerate() {
        let (ci, kx, ky, kz) = (row_index / (k * k * k), row_index / (k * k) % k, row_index / k % k, row_index % k);
        let z_lo = p.saturating_sub(kz).div_ceil(s).min(oz);
        let z_hi = if nz + p > kz { ((nz + p - kz - 1) / s + 1).min(oz) } else { 0 }.max(z_lo);
        for (i, ox) in planes.clone().enumerate() {
            let ix = (ox * s + kx) as isize - p as isize;
            if ix < 0 || ix >= nx as isize {
                continue;
            }
            for y in 0..oy {
                let iy = (y * s + ky) as isize - p as isize;
                if iy < 0 || iy >= ny as isize || z_lo == z_hi {
                    continue;
                }
                let run = &row[(i * oy + y) * oz..][z_lo..z_hi];
                // SAFETY: inside channel ci, row (ix, iy), z < nz; exclusive per the contract.
                let dst = unsafe { std::slice::from_raw_parts_mut(x.add(((ci * nx + ix as usize) * ny + iy as usize) * nz), nz) };
                let first = z_lo * s + kz - p;
                if s == 1 {
                    for (d, v) in dst[first..first + run.len()].iter_mut().zip(run) {
                        *d += v;
                    }
                } else {
                    for (j, v) in run.iter().enumerate() {
                        dst[first + j * s] += v;
                    }
                }
            }
        }
    }
}

/// `dst (m × n, row stride dst_rs) (+)= lhs (m × k) · rhs (k × n)`, strides in floats, one thread.
///
/// # Safety
/// The pointers cover the matrices their strides describe; `dst` is not read or written by
/// anything else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: usize, accumulate: bool, lhs: *const f32, lhs_rs: isize, lhs_cs: isize, rhs: *const f32, rhs_rs: isize, rhs_cs: isize) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(m, n, k, dst, 1, dst_rs as isize, accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, 1.0f32, 1.0f32, false, false, false, gemm::Parallelism::None)
    }
}

thread_local! {
    /// Each thread's column buffer, kept between calls (at most one tile: about
    /// [`TILE_FLOATS`], more only when one output plane needs more).
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's column buffer of at least `len` floats (contents unspecified).
/// `f` must not start rayon work (a task of the same thread could then borrow it again).
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < len {
            c.resize(len, 0.0);
        }
        f(&mut c[..len])
    })
}

/// Call `product(columns, row stride)` with the columns of output planes `planes`: the input
/// itself for a pointwise convolution, else this thread's buffer filled by [`im2col`].
/// `product` must not start rayon work.
fn with_tile_columns<R>(g: &Geometry, x: &[f32], planes: std::ops::Range<usize>, product: impl FnOnce(*const f32, usize) -> R) -> R {
    let [_, oy, oz] = g.output();
    let (first, width) = (planes.start * oy * oz, planes.len() * oy * oz);
    if g.pointwise() {
        return product(x[first..].as_ptr(), oy * oz * g.output()[0]);
    }
    with_columns(g.taps() * width, |cols| {
        im2col(g, x, planes, cols);
        product(cols.as_ptr(), width)
    })
}

/// Tiles of `per_tile` output x planes.
fn tiles(ox: usize, per_tile: usize) -> Vec<std::ops::Range<usize>> {
    (0..ox).step_by(per_tile).map(|a| a..(a + per_tile).min(ox)).collect()
}

/// Whether [`conv3d_direct`] beats im2col + GEMM on this convolution: at stride 1, from or to
/// one channel, and on rows of at least 8 in y and z whatever the channels. The direct kernel
/// keeps a block of output channels × z of sums in registers and needs no columns. Measured
/// per layer on a 2-core Xeon (BENCHMARKS.md, "Explicit multiply-adds"), with its AVX-512 and
/// with its AVX2 kernels: 1.5–6× the GEMM's rate from 8 to 64 channels at 16³ and 32³ (most
/// with few channels), as fast with 128 channels and on 8³; on 4³ the GEMM wins.
fn direct_is_faster(g: &Geometry) -> bool {
    let [_, oy, oz] = g.output();
    g.stride == 1 && g.k > 1 && (g.c_in == 1 || g.c_out == 1 || (oz >= 8 && oy >= 8))
}

/// Whether [`weight_grad_direct`] beats im2col + GEMM on this weight gradient: stride-1 3³
/// convolutions with at most 16 channels on each side, on runs of z and y of at least 8
/// (measured per layer: BENCHMARKS.md, "The demo's U-Net"; with 32 input channels the GEMM
/// is as fast with AVX2 kernels).
fn direct_weight_grad_is_faster(g: &Geometry) -> bool {
    let [_, oy, oz] = g.output();
    g.stride == 1 && g.k == direct_weight_grad::K && g.padding < g.k && oz >= 8 && oy >= 8 && g.c_out <= 16 && g.c_in <= 16
}

/// The convolution of one batch item: `x` `[c_in, X, Y, Z]`, `w` `[c_out, c_in, k, k, k]`,
/// returns `[c_out, OX, OY, OZ]`. Stride-1 convolutions with few output channels run as
/// [`conv3d_direct`] (see [`direct_is_faster`]).
pub fn forward(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.input_len(), "input shape");
    assert_eq!(w.len(), g.c_out * g.taps(), "weight shape");
    if direct_is_faster(g) {
        return conv3d_direct(x, [g.c_in, g.input[0], g.input[1], g.input[2]], w, [g.c_out, g.k], g.padding, None);
    }
    let [ox, oy, oz] = g.output();
    let n = ox * oy * oz;
    let taps = g.taps();
    let all = tiles(ox, g.planes_per_tile(1));
    let fill = |out: SharedMut| {
        all.into_par_iter().for_each(|planes| {
            let out = out;
            let width = planes.len() * oy * oz;
            let first = planes.start * oy * oz;
            with_tile_columns(g, x, planes, |rhs, rhs_rs| {
                // SAFETY: each tile writes its own columns of y; rhs covers taps × width.
                unsafe { matmul(g.c_out, width, taps, out.0.add(first), n, false, w.as_ptr(), taps as isize, 1, rhs, rhs_rs as isize, 1) }
            });
        })
    };
    // SAFETY: the tiles cover every output column and each GEMM writes all c_out rows of its own.
    unsafe { filled_by(g.c_out * n, fill) }
}

/// The gradient of [`forward`] with respect to its input: `dy` `[c_out, OX, OY, OZ]`, `w`
/// `[c_out, c_in, k, k, k]`, returns `[c_in, X, Y, Z]` (also the transposed convolution of
/// `dy`). At stride 1 it is the forward pass of [`Geometry::reversed`].
pub fn input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), g.output_len(), "output gradient shape");
    assert_eq!(w.len(), g.c_out * g.taps(), "weight shape");
    if g.stride == 1 && g.padding < g.k && !g.pointwise() {
        return forward(&g.reversed(), dy, &reversed_kernel(g, w));
    }
    let [ox, oy, oz] = g.output();
    let n = ox * oy * oz;
    let mut dx = vec![0f32; g.input_len()];
    let taps = g.taps();
    let shared = SharedMut(dx.as_mut_ptr());
    // Tiles two apart read disjoint input planes when per_tile · s ≥ k − s; the even tiles run
    // together, then the odd ones.
    let per_tile = g.planes_per_tile(g.k.saturating_sub(g.stride).div_ceil(g.stride).max(1));
    let all = tiles(ox, per_tile);
    for parity in 0..2 {
        all.iter().skip(parity).step_by(2).collect::<Vec<_>>().into_par_iter().for_each(|planes| {
            let width = planes.len() * oy * oz;
            let first = planes.start * oy * oz;
            let shared = shared;
            with_columns(taps * width, |cols| {
                // SAFETY: cols is taps × width; dy's tile columns have row stride n.
                unsafe { matmul(taps, width, g.c_out, cols.as_mut_ptr(), width, false, w.as_ptr(), 1, taps as isize, dy[first..].as_ptr(), n as isize, 1) };
                // SAFETY: tiles of one parity touch disjoint input planes (per_tile above).
                unsafe { col2im_add(g, cols, planes.clone(), shared.0) };
            });
        });
    }
    dx
}

/// The gradient of [`forward`] with respect to its weights: `x` `[c_in, X, Y, Z]`, `dy`
/// `[c_out, OX, OY, OZ]`, returns `[c_out, c_in, k, k, k]`. At stride 1 with more input than
/// output channels it is computed on the reversed convolution, whose columns (from `dy`) are
/// fewer.
pub fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.input_len(), "input shape");
    assert_eq!(dy.len(), g.output_len(), "output gradient shape");
    if direct_weight_grad_is_faster(g) {
        return weight_grad_direct(x, [g.c_in, g.input[0], g.input[1], g.input[2]], dy, g.c_out, g.padding);
    }
    if g.stride == 1 && g.padding < g.k && g.c_in > g.c_out && !g.pointwise() {
        // dw[co, ci, t] = reversed weight gradient [ci, co, k³ − 1 − t].
        let reversed = g.reversed();
        let r = weight_grad(&reversed, dy, x);
        return reversed_kernel(&reversed, &r);
    }
    let [ox, oy, oz] = g.output();
    let n = ox * oy * oz;
    let taps = g.taps();
    let size = g.c_out * taps;
    // The tiles in at most MIN_TILES fixed groups, each summed in tile order into its own
    // buffer, the groups then added in order: the same sums whatever the threads (a fold would
    // group the tiles as the threads happen to take them), and at most MIN_TILES buffers of
    // dw however many tiles a large volume has.
    let tiles = tiles(ox, g.planes_per_tile(1));
    tiles
        .par_chunks(tiles.len().div_ceil(MIN_TILES))
        .map(|group| {
            let mut dw = vec![0f32; size];
            for planes in group {
                let width = planes.len() * oy * oz;
                let first = planes.start * oy * oz;
                with_tile_columns(g, x, planes.clone(), |rhs, rhs_rs| {
                    // dw (c_out × taps) += dy tile (c_out × width) · colsᵀ (width × taps).
                    // SAFETY: the slices cover the strides given.
                    unsafe { matmul(g.c_out, taps, width, dw.as_mut_ptr(), taps, true, dy[first..].as_ptr(), n as isize, 1, rhs, 1, rhs_rs as isize) }
                });
            }
            dw
        })
        .collect::<Vec<_>>()
        .into_iter()
        .reduce(|mut dw, part| {
            dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
            dw
        })
        .expect("a volume has at least one tile")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_data::noise;


    /// The convolution by its definition, in f64.
    fn naive(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f64> {
        let [nx, ny, nz] = g.input;
        let [ox, oy, oz] = g.output();
        let (k, s, p) = (g.k, g.stride, g.padding as isize);
        let mut y = vec![0f64; g.c_out * ox * oy * oz];
        for co in 0..g.c_out {
            for (a, b, c) in (0..ox).flat_map(|a| (0..oy).flat_map(move |b| (0..oz).map(move |c| (a, b, c)))) {
                let mut sum = 0f64;
                for ci in 0..g.c_in {
                    for (i, j, l) in (0..k).flat_map(|i| (0..k).flat_map(move |j| (0..k).map(move |l| (i, j, l)))) {
                        let (ix, iy, iz) = ((a * s + i) as isize - p, (b * s + j) as isize - p, (c * s + l) as isize - p);
                        if ix < 0 || iy < 0 || iz < 0 || ix >= nx as isize || iy >= ny as isize || iz >= nz as isize {
                            continue;
                        }
                        let xv = x[((ci * nx + ix as usize) * ny + iy as usize) * nz + iz as usize] as f64;
                        sum += xv * w[(((co * g.c_in + ci) * k + i) * k + j) * k + l] as f64;
                    }
                }
                y[((co * ox + a) * oy + b) * oz + c] = sum;
            }
        }
        y
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-5 * scale.max(1.0) * 10.0, "{what}: worst difference {worst} (scale {scale})");
    }

    /// Shapes of every kind the networks use: 3³ stride 1 and 2, 1³, 7³ from and to one
    /// channel, odd sizes that leave partial tiles; few channels on y, z runs of 8 or more
    /// (the direct kernel, forward and input gradient).
    const CASES: [(usize, usize, usize, usize, usize, [usize; 3]); 8] = [
        (3, 5, 3, 1, 1, [7, 6, 9]),
        (3, 5, 3, 1, 1, [5, 8, 11]),
        (4, 6, 3, 2, 1, [8, 7, 10]),
        (6, 3, 1, 1, 0, [5, 4, 3]),
        (1, 4, 7, 1, 3, [9, 8, 11]),
        (5, 1, 7, 1, 3, [9, 8, 11]),
        (2, 3, 3, 1, 0, [6, 5, 7]),
        (3, 2, 3, 2, 0, [9, 7, 8]),
    ];

    #[test]
    fn forward_equals_the_definition() {
        for (c_in, c_out, k, stride, padding, input) in CASES {
            let g = Geometry { c_in, c_out, k, stride, padding, input };
            let x = noise(g.input_len(), 1);
            let w = noise(c_out * g.taps(), 2);
            assert_close(&forward(&g, &x, &w), &naive(&g, &x, &w), &format!("forward {g:?}"));
        }
    }

    /// The gradients are the adjoints of the convolution's two linear maps, checked by the
    /// dot-product test against the definition: ⟨input_grad(r), u⟩ = ⟨r, conv(u, w)⟩ and
    /// ⟨weight_grad(x, r), v⟩ = ⟨r, conv(x, v)⟩ for random u, v (a difference quotient of a
    /// linear loss, in every direction at once).
    #[test]
    fn gradients_are_the_adjoints_of_the_definition() {
        let direct = Geometry { c_in: 3, c_out: 5, k: 3, stride: 1, padding: 1, input: [5, 8, 11] };
        assert!(direct_is_faster(&direct) && direct_weight_grad_is_faster(&direct), "a case runs the direct kernels");
        let dot = |a: &[f32], b: &[f64]| a.iter().zip(b).map(|(a, b)| *a as f64 * b).sum::<f64>();
        for (c_in, c_out, k, stride, padding, input) in CASES {
            let g = Geometry { c_in, c_out, k, stride, padding, input };
            let x = noise(g.input_len(), 3);
            let w = noise(c_out * g.taps(), 4);
            let r = noise(g.output_len(), 5);
            let dx = input_grad(&g, &r, &w);
            let dw = weight_grad(&g, &x, &r);
            for probe in 0..2 {
                let u = noise(g.input_len(), 10 + probe);
                let v = noise(c_out * g.taps(), 20 + probe);
                let u64: Vec<f64> = u.iter().map(|&v| v as f64).collect();
                let v64: Vec<f64> = v.iter().map(|&v| v as f64).collect();
                let (lhs, rhs) = (dot(&dx, &u64), dot(&r, &naive(&g, &u, &w)));
                assert!((lhs - rhs).abs() <= 1e-4 * rhs.abs().max(1.0), "input gradient {g:?}: {lhs} vs {rhs}");
                let (lhs, rhs) = (dot(&dw, &v64), dot(&r, &naive(&g, &x, &v)));
                assert!((lhs - rhs).abs() <= 1e-4 * rhs.abs().max(1.0), "weight gradient {g:?}: {lhs} vs {rhs}");
            }
        }
    }

    /// The tiles, and so the order the gradients' parts are summed in, do not follow the
    /// threads: a result is the same bit for bit on a pool of 1, 2 or 5 threads.
    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        // Stride 2 (input gradient through col2im) and 24 input channels (weight gradient on
        // the GEMM, 12 tiles of 3 planes), on 34 output planes.
        let g = Geometry { c_in: 24, c_out: 6, k: 3, stride: 2, padding: 1, input: [67, 9, 10] };
        assert!(!direct_weight_grad_is_faster(&g) && g.planes_per_tile(1) < g.output()[0]);
        let (x, w, r) = (noise(g.input_len(), 1), noise(g.c_out * g.taps(), 2), noise(g.output_len(), 3));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (forward(&g, &x, &w), input_grad(&g, &r, &w), weight_grad(&g, &x, &r)))
        };
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let one = run(1);
        for threads in [2, 5] {
            let many = run(threads);
            assert_eq!(bits(&many.0), bits(&one.0), "forward, {threads} threads");
            assert_eq!(bits(&many.1), bits(&one.1), "input gradient, {threads} threads");
            assert_eq!(bits(&many.2), bits(&one.2), "weight gradient, {threads} threads");
        }
    }
}
