//! A direct 3-D convolution (stride 1, zero padding) for the shapes im2col + GEMM handles
//! badly: one input channel or one output channel with a large kernel, as the generator's 7³
//! stem (1 → ngf) and head (ngf → 1). [`super::conv_gemm`] runs such layers through it,
//! forward and (as the reversed convolution) for the input gradient.
//!
//! Each task computes one output x plane, run by run: a run's sums (a block of output channels
//! × consecutive z) stay in registers while the kernel taps stream through them with fused
//! multiply-adds (explicit AVX-512F or AVX2 + FMA kernels chosen at run time, a plain
//! fallback), so each input value is loaded once per tap and used for every channel of the
//! block. Every level sums each output in the same order with one rounding per multiply-add,
//! so the levels agree bit for bit.

use super::buffer::{SharedMut, filled_by};
use super::simd::Level;
use rayon::prelude::*;

/// `out[co][x][y][z] = bias[co] + Σ_ci Σ_ijk w[co][ci][i][j][k] · in[ci][x+i−p][y+j−p][z+k−p]`
/// for `input` of shape `[c_in, nx, ny, nz]` (zero outside), `weight` of shape
/// `[c_out, c_in, k, k, k]` (standard layout) and padding `p`; the output has shape
/// `[c_out, nx+2p−k+1, ny+2p−k+1, nz+2p−k+1]`.
pub fn conv3d_direct(input: &[f32], shape: [usize; 4], weight: &[f32], kernel: [usize; 2], padding: usize, bias: Option<&[f32]>) -> Vec<f32> {
    conv3d_direct_at(Level::current(), input, shape, weight, kernel, padding, bias)
}

/// [`conv3d_direct`] with the kernels of instruction set `level` (at most what the CPU runs).
pub fn conv3d_direct_at(level: Level, input: &[f32], [c_in, nx, ny, nz]: [usize; 4], weight: &[f32], [c_out, k]: [usize; 2], padding: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert!(level <= Level::detected(), "{level:?} is above what this CPU runs");
    assert_eq!(input.len(), c_in * nx * ny * nz, "input shape");
    assert_eq!(weight.len(), c_out * c_in * k * k * k, "weight shape");
    assert!(bias.is_none_or(|b| b.len() == c_out), "bias length");
    let p = padding;
    assert!(k >= 1 && [nx, ny, nz].iter().all(|&m| k <= m + 2 * p), "kernel {k} larger than the padded input");
    let o = [nx, ny, nz].map(|m| m + 2 * p + 1 - k);
    let blocking = Blocking::of(level, c_out, o[2]);
    // Zeros past z as well, so that every run of `zc` outputs reads whole rows.
    let extra_z = o[2].next_multiple_of(blocking.zc) - o[2];
    let input = zero_padded(input, [c_in, nx, ny, nz], p, extra_z);
    let n = [nx + 2 * p, ny + 2 * p, nz + 2 * p + extra_z];
    convolve(&Problem::new(Shape { c_in, n, c_out, k, o }, &input, weight, bias, blocking))
}

/// `input` `[c, nx, ny, nz]` with `pad` zeros before and after every axis and `extra_z` more
/// after z (borrowed when there is nothing to add).
pub(crate) fn zero_padded(input: &[f32], [c, nx, ny, nz]: [usize; 4], pad: usize, extra_z: usize) -> std::borrow::Cow<'_, [f32]> {
    if pad == 0 && extra_z == 0 {
        return std::borrow::Cow::Borrowed(input);
    }
    let n = [nx + 2 * pad, ny + 2 * pad, nz + 2 * pad + extra_z];
    let mut buffer = vec![0f32; c * n[0] * n[1] * n[2]];
    for (ch, x, y) in (0..c).flat_map(|ch| (0..nx).flat_map(move |x| (0..ny).map(move |y| (ch, x, y)))) {
        let from = ((ch * nx + x) * ny + y) * nz;
        let to = ((ch * n[0] + x + pad) * n[1] + y + pad) * n[2] + pad;
        buffer[to..to + nz].copy_from_slice(&input[from..from + nz]);
    }
    std::borrow::Cow::Owned(buffer)
}

/// Sizes of one convolution.
struct Shape {
    c_in: usize,
    /// Padded input size (z padded to whole runs).
    n: [usize; 3],
    c_out: usize,
    k: usize,
    /// Output size.
    o: [usize; 3],
}

/// The sums of one run, `[co][zc]`, written into the slice (see [`Run`]).
type RunKernel = unsafe fn(&Run, &mut [f32]);

/// How an instruction set cuts the output: runs of `co` output channels × `zc` consecutive z,
/// each computed by `kernel` with its sums in registers.
#[derive(Clone, Copy)]
struct Blocking {
    co: usize,
    zc: usize,
    kernel: RunKernel,
}

impl Blocking {
    /// The runs of `level` for `c_out` channels and output rows of `oz`: as many sums as the
    /// registers hold (8 to 16 vectors, enough to hide the multiply-add latency) with few
    /// loads per multiply-add, and runs not much longer than a row.
    fn of(level: Level, c_out: usize, oz: usize) -> Blocking {
        #[cfg(target_arch = "x86_64")]
        if let Some((co, zc, kernel)) = Self::x86(level, c_out >= 8, oz) {
            return Blocking { co, zc, kernel };
        }
        if c_out >= 8 { Blocking { co: 8, zc: 8, kernel: run_plain::<8, 8> } } else { Blocking { co: 1, zc: 64, kernel: run_plain::<1, 64> } }
    }

    /// The vector kernels' runs (none for the plain level), for at least 8 channels (`wide`) or fewer.
    #[cfg(target_arch = "x86_64")]
    fn x86(level: Level, wide: bool, oz: usize) -> Option<(usize, usize, RunKernel)> {
        Some(match (level, wide) {
            (Level::Avx512, true) if oz > 16 => (8, 32, run_avx512::<8, 2>),
            (Level::Avx512, true) if oz > 8 => (8, 16, run_avx512::<8, 1>),
            // Rows of at most 8: half of every 16-lane register would be wasted.
            (Level::Avx512 | Level::Avx2, true) if oz <= 8 => (8, 8, run_avx2::<8, 1>),
            (Level::Avx512, false) => (1, 64, run_avx512::<1, 4>),
            (Level::Avx2, true) => (4, 16, run_avx2::<4, 2>),
            (Level::Avx2, false) => (1, 64, run_avx2::<1, 8>),
            (_, _) => return None,
        })
    }
}

/// What every task reads: sizes, the padded input, the weights grouped per block of output
/// channels as `[tap][channel]` (zero past `c_out`, so one tap's weights are adjacent) and
/// the bias per block (zero past `c_out`).
struct Problem<'a> {
    shape: Shape,
    input: &'a [f32],
    grouped: Vec<f32>,
    bias: Vec<f32>,
    blocking: Blocking,
}

impl<'a> Problem<'a> {
    fn new(shape: Shape, input: &'a [f32], weight: &[f32], bias: Option<&[f32]>, blocking: Blocking) -> Problem<'a> {
        let Shape { c_in, c_out, k, .. } = shape;
        let (co, taps) = (blocking.co, c_in * k * k * k);
        let blocks = c_out.div_ceil(co);
        let mut grouped = vec![0f32; blocks * taps * co];
        for c in 0..c_out {
            for t in 0..taps {
                grouped[((c / co) * taps + t) * co + c % co] = weight[c * taps + t];
            }
        }
        let mut block_bias = vec![0f32; blocks * co];
        if let Some(b) = bias {
            block_bias[..c_out].copy_from_slice(b);
        }
        Problem { shape, input, grouped, bias: block_bias, blocking }
    }
}

/// The operands of one run: the rows `input[at + ci·strides[0] + i·strides[1] + j·strides[2]
/// + kk ..][..zc]` times `weights[((ci·k + i)·k + j)·k + kk][c]`, summed from `bias[c]` in the
/// order (ci, i, j, kk), one rounding per multiply-add (the same on every level).
struct Run<'a> {
    input: &'a [f32],
    at: usize,
    strides: [usize; 3],
    c_in: usize,
    k: usize,
    weights: &'a [f32],
    bias: &'a [f32],
}

impl Run<'_> {
    /// Panics unless every value a run of `CO` channels × `zc` z reads lies inside the operands.
    fn check<const CO: usize>(&self, zc: usize, sums: &[f32]) {
        let Run { input, at, strides: [sc, sx, sy], c_in, k, weights, bias } = *self;
        assert!(c_in >= 1 && k >= 1 && sums.len() == CO * zc && bias.len() == CO && weights.len() == c_in * k * k * k * CO);
        assert!(at + (c_in - 1) * sc + (k - 1) * (sx + sy) + k - 1 + zc <= input.len(), "a run reads past the input");
    }
}

/// The output `[c_out][o]` of `problem`, one task per output x.
fn convolve(problem: &Problem) -> Vec<f32> {
    let [ox, oy, oz] = problem.shape.o;
    let plane = oy * oz;
    // One task per output x, writing its plane of every output channel in place.
    let fill = |out: SharedMut| {
        (0..ox).into_par_iter().for_each(|x| {
            let out: SharedMut = out; // the whole pointer, not its field, is shared with the tasks
            output_x(problem, x, &mut |co: usize, offset: usize, values: &[f32]| {
                // SAFETY: task x writes only the planes x of each channel, inside the output.
                unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out.0.add((co * ox + x) * plane + offset), values.len()) }
            })
        })
    };
    // SAFETY: the tasks write every (channel, x, y, z) of the output (output_x covers its plane).
    unsafe { filled_by(problem.shape.c_out * ox * plane, fill) }
}

/// Every output channel's plane at output `x`, handed to `write(channel, offset in the plane,
/// values)` run by run; together the runs cover each plane.
fn output_x(problem: &Problem, x: usize, write: &mut dyn FnMut(usize, usize, &[f32])) {
    let Problem { shape, input, grouped, bias, blocking: Blocking { co, zc, kernel } } = problem;
    let Shape { c_in, n: [nx, ny, nz], c_out, k, o: [_, oy, oz] } = *shape;
    let (co, zc, taps) = (*co, *zc, c_in * k * k * k);
    let mut sums = vec![0f32; co * zc];
    for block in 0..c_out.div_ceil(co) {
        let (co0, cos) = (block * co, co.min(c_out - block * co));
        for y in 0..oy {
            for z0 in (0..oz).step_by(zc) {
                let run = Run {
                    input,
                    at: (x * ny + y) * nz + z0,
                    strides: [nx * ny * nz, ny * nz, nz],
                    c_in,
                    k,
                    weights: &grouped[block * taps * co..][..taps * co],
                    bias: &bias[co0..co0 + co],
                };
                // SAFETY: the blocking's kernel runs on this CPU (`Blocking::of` picks it for a
                // level at most the detected one); it checks its operands.
                unsafe { kernel(&run, &mut sums) };
                let len = zc.min(oz - z0);
                for c in 0..cos {
                    write(co0 + c, y * oz + z0, &sums[c * zc..c * zc + len]);
                }
            }
        }
    }
}

/// A run kernel over `$lanes`-float registers: `CO` channels × `NV` registers of z, the sums
/// started from the bias and fed by fused multiply-adds in the order of [`Run`].
macro_rules! simd_run_kernel {
    ($(#[$doc:meta])* $name:ident, $features:literal, $vec:ty, $lanes:literal, $set1:ident, $loadu:ident, $fmadd:ident, $storeu:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const CO: usize, const NV: usize>(run: &Run, sums: &mut [f32]) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            run.check::<CO>(NV * L, sums);
            let Run { input, at, strides: [sc, sx, sy], c_in, k, weights, bias } = *run;
            let mut acc: [[$vec; NV]; CO] = std::array::from_fn(|c| [$set1(bias[c]); NV]);
            let mut w = weights.chunks_exact(CO);
            for ci in 0..c_in {
                for i in 0..k {
                    for j in 0..k {
                        let row = at + ci * sc + i * sx + j * sy;
                        for kk in 0..k {
                            // SAFETY: inside the input (checked above).
                            let v: [$vec; NV] = std::array::from_fn(|n| unsafe { $loadu(input.as_ptr().add(row + kk + n * L)) });
                            let wk = w.next().expect("a tap per (ci, i, j, kk)");
                            for c in 0..CO {
                                let wc = $set1(wk[c]);
                                for n in 0..NV {
                                    acc[c][n] = $fmadd(wc, v[n], acc[c][n]);
                                }
                            }
                        }
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                for (n, a) in a.iter().enumerate() {
                    // SAFETY: sums holds CO × NV × L values (checked above).
                    unsafe { $storeu(sums.as_mut_ptr().add((c * NV + n) * L), *a) };
                }
            }
        }
    };
}

simd_run_kernel!(
    /// One run with AVX-512F: `CO` channels × `NV` registers of 16 z.
    run_avx512, "avx512f,fma", __m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_storeu_ps
);
simd_run_kernel!(
    /// One run with AVX2 and FMA: `CO` channels × `NV` registers of 8 z.
    run_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_storeu_ps
);

/// One run in plain code: `CO` channels × `ZC` z, one rounding per multiply-add as the vector
/// kernels.
fn run_plain<const CO: usize, const ZC: usize>(run: &Run, sums: &mut [f32]) {
    run.check::<CO>(ZC, sums);
    let Run { input, at, strides: [sc, sx, sy], c_in, k, weights, bias } = *run;
    let mut acc: [[f32; ZC]; CO] = std::array::from_fn(|c| [bias[c]; ZC]);
    let mut w = weights.chunks_exact(CO);
    for ci in 0..c_in {
        for i in 0..k {
            for j in 0..k {
                let row = at + ci * sc + i * sx + j * sy;
                for kk in 0..k {
                    let v = &input[row + kk..row + kk + ZC];
                    let wk = w.next().expect("a tap per (ci, i, j, kk)");
                    for (a, &wc) in acc.iter_mut().zip(wk) {
                        for (a, &v) in a.iter_mut().zip(v) {
                            *a = wc.mul_add(v, *a);
                        }
                    }
                }
            }
        }
    }
    for (s, a) in sums.chunks_exact_mut(ZC).zip(&acc) {
        s.copy_from_slice(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_data::noise;
    use burn::tensor::module::conv3d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Tensor, TensorData};


    #[test]
    fn equals_burns_convolution() {
        let device = Device::flex();
        // Stem-like (1 → 9, so a block of 8 and a rest of 1), head-like (5 → 1), both padded
        // by 3 as the generator's, and two unpadded cases; z sizes that leave partial runs.
        for (c_in, c_out, k, pad, n) in [(1, 9, 7, 3, [12, 10, 75]), (5, 1, 7, 3, [11, 9, 80]), (2, 3, 3, 0, [6, 5, 4]), (1, 8, 7, 0, [9, 8, 20]), (8, 16, 3, 1, [7, 9, 19]), (16, 8, 3, 1, [5, 8, 8])] {
            let input = noise(c_in * n.iter().product::<usize>(), 1);
            let weight = noise(c_out * c_in * k * k * k, 2);
            let bias = noise(c_out, 3);
            // Every instruction set this CPU runs (CTA2MBF_SIMD's choices), bit for bit the same.
            let levels = Level::available();
            let runs: Vec<Vec<f32>> = levels.iter().map(|&l| conv3d_direct_at(l, &input, [c_in, n[0], n[1], n[2]], &weight, [c_out, k], pad, Some(&bias))).collect();
            for (l, r) in levels.iter().zip(&runs) {
                assert!(r == &runs[0], "{c_in}->{c_out} k{k}: {l:?} differs from {:?}", levels[0]);
            }
            let got = runs.into_iter().last().expect("at least the scalar level");
            let x: Tensor<5> = Tensor::<1>::from_data(TensorData::new(input, [c_in * n.iter().product::<usize>()]), &device).reshape([1, c_in, n[0], n[1], n[2]]);
            let w: Tensor<5> = Tensor::<1>::from_data(TensorData::new(weight, [c_out * c_in * k * k * k]), &device).reshape([c_out, c_in, k, k, k]);
            let b: Tensor<1> = Tensor::from_data(TensorData::new(bias, [c_out]), &device);
            let want = conv3d(x, w, Some(b), ConvOptions::new([1; 3], [pad; 3], [1; 3], 1)).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(got.len(), want.len());
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{c_in}->{c_out} k{k}: {worst}");
        }
    }
}
