//! The weight gradient of a stride-1 3³ convolution with few output channels, computed
//! directly: `dw[co][ci][i][j][kk] = Σ_xyz dy[co][x][y][z] · in[ci][x+i−p][y+j−p][z+kk−p]`.
//! im2col + GEMM copies the input 27 times into columns and runs a product whose rows are the
//! few output channels; here each task holds the sums of one input channel and one kernel
//! row `(i, j)` for a block of output channels in registers (channels × the three `kk` ×
//! [`LANES`] z) while `dy` and the input rows stream past, with fused multiply-adds.
//!
//! Every instruction set accumulates lane `l` over the z ≡ l (mod [`LANES`]) in the same order
//! and sums the lanes in the same order, so the levels agree bit for bit.

use super::direct_conv::zero_padded;
use super::simd::Level;
use rayon::prelude::*;

/// The kernel size this module handles.
pub const K: usize = 3;
/// z values summed apart (lanes of the accumulators), the same on every level.
const LANES: usize = 16;
/// Output channels a task holds with AVX-512 (3 × 8 registers of sums).
const AVX512_BLOCK: usize = 8;
/// Output channels a task holds with AVX2 or plain code (3 × 2 × 2 registers of sums).
const BLOCK: usize = 2;

/// The weight gradient `[c_out, c_in, 3, 3, 3]` of the stride-1 convolution of `input`
/// `[c_in, nx, ny, nz]` (zero padding `padding` < 3) whose output gradient is `dy`
/// `[c_out, ox, oy, oz]`, `o = n + 2·padding − 2`.
pub fn weight_grad_direct(input: &[f32], shape: [usize; 4], dy: &[f32], c_out: usize, padding: usize) -> Vec<f32> {
    weight_grad_direct_at(Level::current(), input, shape, dy, c_out, padding)
}

/// [`weight_grad_direct`] with the kernels of instruction set `level` (at most what the CPU runs).
pub fn weight_grad_direct_at(level: Level, input: &[f32], [c_in, nx, ny, nz]: [usize; 4], dy: &[f32], c_out: usize, padding: usize) -> Vec<f32> {
    assert!(level <= Level::detected(), "{level:?} is above what this CPU runs");
    assert!(padding < K, "padding {padding} of a 3³ kernel");
    let (p, n) = (padding, [nx, ny, nz]);
    assert!(n.iter().all(|&m| m + 2 * p >= K), "input {n:?} smaller than the kernel");
    let o = n.map(|m| m + 2 * p + 1 - K);
    assert_eq!(input.len(), c_in * nx * ny * nz, "input shape");
    assert_eq!(dy.len(), c_out * o.iter().product::<usize>(), "output gradient shape");
    // z runs of whole lane groups: dy padded with zeros past oz (and with zero channels up to
    // a whole block), the input with the convolution's padding and enough zeros past it.
    let oz = o[2].next_multiple_of(LANES);
    let input = zero_padded(input, [c_in, nx, ny, nz], p, oz + K - 1 - (nz + 2 * p));
    let block = if level == Level::Avx512 { AVX512_BLOCK } else { BLOCK };
    let blocks = c_out.div_ceil(block);
    let mut dy = zero_padded(dy, [c_out, o[0], o[1], o[2]], 0, oz - o[2]).into_owned();
    dy.resize(blocks * block * o[0] * o[1] * oz, 0.0);
    let problem = Problem { input: &input, dy: &dy, o: [o[0], o[1], oz], n: [o[0] + K - 1, o[1] + K - 1, oz + K - 1] };
    // One task per (block of output channels, input channel, i, j): the sums of that block's
    // channels for the three kk.
    let sums: Vec<Vec<f32>> = (0..blocks * c_in * K * K)
        .into_par_iter()
        .map(|t| {
            let task = Task::numbered(t, c_in, block);
            #[cfg(target_arch = "x86_64")]
            if level == Level::Avx512 {
                // SAFETY: the CPU has AVX-512F and FMA (`level` is at most the detected one).
                return unsafe { row_sums_avx512(&problem, task) };
            }
            #[cfg(target_arch = "x86_64")]
            if level == Level::Avx2 {
                // SAFETY: the CPU has AVX2 and FMA (`level` is at most the detected one).
                return unsafe { row_sums_avx2(&problem, task) };
            }
            row_sums::<BLOCK>(&problem, task)
        })
        .collect();
    let mut dw = vec![0f32; c_out * c_in * K * K * K];
    for (t, s) in sums.iter().enumerate() {
        let Task { co0, ci, i, j } = Task::numbered(t, c_in, block);
        for (c, kk_sums) in s.chunks(K).enumerate().filter(|(c, _)| co0 + c < c_out) {
            let at = ((((co0 + c) * c_in + ci) * K + i) * K + j) * K;
            dw[at..at + K].copy_from_slice(kk_sums);
        }
    }
    dw
}

/// The padded operands: `input` `[c_in][n]`, `dy` `[blocks·block][o]` (z of both padded to
/// whole lane groups).
struct Problem<'a> {
    input: &'a [f32],
    dy: &'a [f32],
    /// Output size, z a multiple of [`LANES`].
    o: [usize; 3],
    /// Padded input size.
    n: [usize; 3],
}

/// One task: output channels from `co0`, input channel `ci`, kernel row `(i, j)`.
#[derive(Clone, Copy)]
struct Task {
    co0: usize,
    ci: usize,
    i: usize,
    j: usize,
}

impl Task {
    /// Task `t` in the order (block of `block` output channels, input channel, i, j).
    fn numbered(t: usize, c_in: usize, block: usize) -> Task {
        let ij = t % (K * K);
        Task { co0: t / (c_in * K * K) * block, ci: t / (K * K) % c_in, i: ij / K, j: ij % K }
    }
}

/// What one task reads: the rows of its input channel and kernel row, and of its output
/// channels' gradients, at every output `(x, y)`.
struct Rows {
    input: *const f32,
    dy: *const f32,
    task: Task,
    /// Output size, z a multiple of [`LANES`].
    o: [usize; 3],
    /// Padded input size.
    n: [usize; 3],
}

impl Rows {
    /// The rows of `task`, after checking that every row it reads lies inside the operands.
    fn of<const CO: usize>(problem: &Problem, task: Task) -> Rows {
        let Problem { input, dy, o: [ox, oy, oz], n: [nx, ny, nz] } = *problem;
        assert!((task.ci + 1) * nx * ny * nz <= input.len() && (task.co0 + CO) * ox * oy * oz <= dy.len());
        assert!(task.i + ox <= nx && task.j + oy <= ny && oz + K - 1 == nz && oz % LANES == 0);
        Rows { input: input.as_ptr(), dy: dy.as_ptr(), task, o: problem.o, n: problem.n }
    }

    /// Gradient row length (a multiple of [`LANES`]).
    fn oz(&self) -> usize {
        self.o[2]
    }

    /// Call `f(input row, gradient row of each channel)` for every output `(x, y)`, in order.
    #[inline(always)]
    fn for_each<const CO: usize>(&self, mut f: impl FnMut(*const f32, [*const f32; CO])) {
        let (Task { co0, ci, i, j }, [ox, oy, oz], [nx, ny, nz]) = (self.task, self.o, self.n);
        for x in 0..ox {
            for y in 0..oy {
                // SAFETY: inside the operands (checked by `of`).
                let row = unsafe { self.input.add(((ci * nx + x + i) * ny + y + j) * nz) };
                let grads = std::array::from_fn(|c| unsafe { self.dy.add((((co0 + c) * ox + x) * oy + y) * oz) });
                f(row, grads);
            }
        }
    }
}

/// The `[c][kk]` sums of `acc`'s lanes, each summed in lane order.
fn lane_sums<const CO: usize>(acc: &[[[f32; LANES]; K]; CO]) -> Vec<f32> {
    acc.iter().flat_map(|kk| kk.iter().map(|lanes| lanes.iter().sum::<f32>())).collect()
}

/// [`row_sums`] with AVX-512F: each lane group is one register; 8 channels × 3 kk sums held.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn row_sums_avx512(problem: &Problem, task: Task) -> Vec<f32> {
    use std::arch::x86_64::*;
    const CO: usize = AVX512_BLOCK;
    let rows = Rows::of::<CO>(problem, task);
    let mut acc = [[_mm512_setzero_ps(); K]; CO];
    rows.for_each::<CO>(|row, grads| {
        for z0 in (0..rows.oz()).step_by(LANES) {
            // SAFETY: z0 + kk + LANES ≤ nz along the row, z0 + LANES ≤ oz along the gradients.
            let v: [__m512; K] = std::array::from_fn(|kk| unsafe { _mm512_loadu_ps(row.add(z0 + kk)) });
            for c in 0..CO {
                let g = unsafe { _mm512_loadu_ps(grads[c].add(z0)) };
                for kk in 0..K {
                    acc[c][kk] = _mm512_fmadd_ps(g, v[kk], acc[c][kk]);
                }
            }
        }
    });
    let mut lanes = [[[0f32; LANES]; K]; CO];
    for (l, a) in lanes.iter_mut().zip(&acc) {
        for (l, a) in l.iter_mut().zip(a) {
            // SAFETY: a 16-float array.
            unsafe { _mm512_storeu_ps(l.as_mut_ptr(), *a) };
        }
    }
    lane_sums(&lanes)
}

/// [`row_sums`] with AVX2 and FMA: each lane group is two registers; 2 channels × 3 kk sums held.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_sums_avx2(problem: &Problem, task: Task) -> Vec<f32> {
    use std::arch::x86_64::*;
    const CO: usize = BLOCK;
    let rows = Rows::of::<CO>(problem, task);
    let mut acc = [[[_mm256_setzero_ps(); 2]; K]; CO];
    rows.for_each::<CO>(|row, grads| {
        for z0 in (0..rows.oz()).step_by(LANES) {
            for h in 0..2 {
                let z = z0 + 8 * h;
                // SAFETY: z + kk + 8 ≤ nz along the row, z + 8 ≤ oz along the gradients.
                let v: [__m256; K] = std::array::from_fn(|kk| unsafe { _mm256_loadu_ps(row.add(z + kk)) });
                for c in 0..CO {
                    let g = unsafe { _mm256_loadu_ps(grads[c].add(z)) };
                    for kk in 0..K {
                        acc[c][kk][h] = _mm256_fmadd_ps(g, v[kk], acc[c][kk][h]);
                    }
                }
            }
        }
    });
    let mut lanes = [[[0f32; LANES]; K]; CO];
    for (l, a) in lanes.iter_mut().zip(&acc) {
        for (l, a) in l.iter_mut().zip(a) {
            // SAFETY: two 8-float halves of a 16-float array.
            unsafe { _mm256_storeu_ps(l.as_mut_ptr(), a[0]) };
            unsafe { _mm256_storeu_ps(l.as_mut_ptr().add(8), a[1]) };
        }
    }
    lane_sums(&lanes)
}

/// The `[c][kk]` sums of the task's `CO` output channels, lane by lane with one rounding per
/// multiply-add (what the vector kernels compute).
fn row_sums<const CO: usize>(problem: &Problem, task: Task) -> Vec<f32> {
    let rows = Rows::of::<CO>(problem, task);
    let mut acc = [[[0f32; LANES]; K]; CO];
    rows.for_each::<CO>(|row, grads| {
        for z0 in (0..rows.oz()).step_by(LANES) {
            for c in 0..CO {
                for (kk, a) in acc[c].iter_mut().enumerate() {
                    for (l, a) in a.iter_mut().enumerate() {
                        // SAFETY: z0 + kk + l < nz along the row, z0 + l < oz along the gradients.
                        let (g, v) = unsafe { (*grads[c].add(z0 + l), *row.add(z0 + kk + l)) };
                        *a = g.mul_add(v, *a);
                    }
                }
            }
        }
    });
    lane_sums(&acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_data::noise;

    /// The definition in f64.
    fn naive(input: &[f32], [c_in, nx, ny, nz]: [usize; 4], dy: &[f32], c_out: usize, p: usize) -> Vec<f64> {
        let o = [nx, ny, nz].map(|m| m + 2 * p + 1 - K);
        let mut dw = vec![0f64; c_out * c_in * K * K * K];
        for co in 0..c_out {
            for ci in 0..c_in {
                for (i, j, kk) in (0..K).flat_map(|i| (0..K).flat_map(move |j| (0..K).map(move |kk| (i, j, kk)))) {
                    let mut s = 0f64;
                    for (x, y, z) in (0..o[0]).flat_map(|x| (0..o[1]).flat_map(move |y| (0..o[2]).map(move |z| (x, y, z)))) {
                        let (a, b, c) = ((x + i) as isize - p as isize, (y + j) as isize - p as isize, (z + kk) as isize - p as isize);
                        if a < 0 || b < 0 || c < 0 || a >= nx as isize || b >= ny as isize || c >= nz as isize {
                            continue;
                        }
                        let v = input[((ci * nx + a as usize) * ny + b as usize) * nz + c as usize] as f64;
                        s += dy[((co * o[0] + x) * o[1] + y) * o[2] + z] as f64 * v;
                    }
                    dw[(((co * c_in + ci) * K + i) * K + j) * K + kk] = s;
                }
            }
        }
        dw
    }

    #[test]
    fn every_level_gives_the_definition_bit_for_bit_alike() {
        // Blocks of 8 and of 2 with a rest, z runs that end inside a lane group, padding 1 and 0.
        for (c_in, c_out, p, n) in [(3, 9, 1, [5, 6, 19]), (16, 8, 1, [4, 5, 33]), (2, 3, 0, [6, 5, 17]), (1, 1, 1, [3, 3, 3])] {
            let shape = [c_in, n[0], n[1], n[2]];
            let input = noise(c_in * n.iter().product::<usize>(), 4);
            let o = n.map(|m| m + 2 * p + 1 - K);
            let dy = noise(c_out * o.iter().product::<usize>(), 5);
            let want = naive(&input, shape, &dy, c_out, p);
            let levels = Level::available();
            let runs: Vec<Vec<f32>> = levels.iter().map(|&l| weight_grad_direct_at(l, &input, shape, &dy, c_out, p)).collect();
            for (l, r) in levels.iter().zip(&runs) {
                assert!(r == &runs[0], "{c_in}->{c_out}: {l:?} differs from {:?}", levels[0]);
            }
            let worst = runs[0].iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{c_in}->{c_out} p{p}: {worst}");
        }
    }
}
