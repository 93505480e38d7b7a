//! A direct 3-D convolution (stride 1, zero padding) for the shapes im2col + GEMM handles
//! badly: one input channel or one output channel with a large kernel, as the generator's 7³
//! stem (1 → ngf) and head (ngf → 1). [`super::conv_gemm`] runs such layers through it,
//! forward and (as the reversed convolution) for the input gradient.
//!
//! Each task computes one output x plane; the sums are kept in a block of registers
//! (output channels × a run of z) while the kernel taps stream through them, so each input
//! value is loaded once per tap row and used for every output channel of the block.

use super::buffer::{SharedMut, filled_by};
use super::simd::Level;
use rayon::prelude::*;

/// Output values computed together (output channels × consecutive z) for fewer than 8 channels.
const ACCUMULATORS: usize = 64;

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
    let p = padding;
    let n = [nx + 2 * p, ny + 2 * p, nz + 2 * p];
    assert!(k >= 1 && n.iter().all(|&m| k <= m), "kernel {k} larger than the padded input {n:?}");
    let input = zero_padded(input, [c_in, nx, ny, nz], p, 0);
    let shape = Shape { c_in, n, c_out, k };
    // Blocks of 8 output channels × 8 z for 8 channels or more, else 1 × 64.
    if c_out >= 8 { run::<8, 8>(level, &shape, &input, weight, bias) } else { run::<1, ACCUMULATORS>(level, &shape, &input, weight, bias) }
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
    n: [usize; 3],
    c_out: usize,
    k: usize,
}

impl Shape {
    /// Output size along `axis`.
    fn out(&self, axis: usize) -> usize {
        self.n[axis] + 1 - self.k
    }
}

/// What every task reads: sizes, the (padded) input, the weights grouped per block of `CO`
/// output channels as `[tap][channel]` (zero past `c_out`, so one tap's weights are
/// adjacent) and the bias.
struct Problem<'a> {
    shape: &'a Shape,
    input: &'a [f32],
    grouped: Vec<f32>,
    bias: Option<&'a [f32]>,
}

fn run<const CO: usize, const ZC: usize>(level: Level, shape: &Shape, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let Shape { c_in, c_out, k, .. } = *shape;
    let [ox, oy, oz] = [shape.out(0), shape.out(1), shape.out(2)];
    let (plane, taps) = (oy * oz, c_in * k * k * k);
    let mut grouped = vec![0f32; c_out.div_ceil(CO) * taps * CO];
    for co in 0..c_out {
        for t in 0..taps {
            grouped[((co / CO) * taps + t) * CO + co % CO] = weight[co * taps + t];
        }
    }
    let problem = Problem { shape, input, grouped, bias };
    // One task per output x, writing its plane of every output channel in place.
    let plane_of = |out: SharedMut, x: usize| {
        move |co: usize, offset: usize, values: &[f32]| {
            // SAFETY: task x writes only the planes x of each channel, inside the output.
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out.0.add((co * ox + x) * plane + offset), values.len()) }
        }
    };
    let fill = |out: SharedMut| {
        (0..ox).into_par_iter().for_each(|x| {
            let mut write = plane_of(out, x);
            #[cfg(target_arch = "x86_64")]
            if level == Level::Avx512 {
                // SAFETY: the CPU has AVX-512F (`level` is at most the detected one).
                return unsafe { output_x_avx512::<CO, ZC>(&problem, x, &mut write) };
            }
            #[cfg(target_arch = "x86_64")]
            if level == Level::Avx2 {
                // SAFETY: the CPU has AVX2 and FMA (`level` is at most the detected one).
                return unsafe { output_x_avx2::<CO, ZC>(&problem, x, &mut write) };
            }
            output_x::<CO, ZC>(&problem, x, &mut write)
        })
    };
    // SAFETY: the tasks write every (channel, x, y, z) of the output (output_x covers its plane).
    unsafe { filled_by(c_out * ox * plane, fill) }
}

/// [`output_x`] compiled for AVX-512F (sixteen lanes at a time where the block allows).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_x_avx512<const CO: usize, const ZC: usize>(problem: &Problem, x: usize, write: &mut dyn FnMut(usize, usize, &[f32])) {
    output_x::<CO, ZC>(problem, x, write)
}

/// [`output_x`] compiled for AVX2 and FMA (eight lanes at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_x_avx2<const CO: usize, const ZC: usize>(problem: &Problem, x: usize, write: &mut dyn FnMut(usize, usize, &[f32])) {
    output_x::<CO, ZC>(problem, x, write)
}

/// Every output channel's plane at output `x`, handed to `write(channel, offset in the plane,
/// values)` run by run; together the runs cover each plane.
#[inline(always)]
fn output_x<const CO: usize, const ZC: usize>(problem: &Problem, x: usize, write: &mut dyn FnMut(usize, usize, &[f32])) {
    let Problem { shape, input, grouped, bias } = problem;
    let Shape { c_in, n: [nx, ny, nz], c_out, k } = **shape;
    let (oy, oz) = (shape.out(1), shape.out(2));
    let taps = c_in * k * k * k;
    let mut padded = vec![0f32; ZC + k];
    for block in 0..c_out.div_ceil(CO) {
        let (co0, cos) = (block * CO, CO.min(c_out - block * CO));
        let w_block = &grouped[block * taps * CO..][..taps * CO];
        for y in 0..oy {
            for z0 in (0..oz).step_by(ZC) {
                let run = ZC.min(oz - z0);
                let mut acc = [[0f32; ZC]; CO];
                for (c, a) in acc.iter_mut().enumerate().take(cos) {
                    *a = [bias.map_or(0.0, |b| b[co0 + c]); ZC];
                }
                for ci in 0..c_in {
                    for i in 0..k {
                        for j in 0..k {
                            let start = ((ci * nx + x + i) * ny + y + j) * nz + z0;
                            let row: &[f32] = if run == ZC {
                                &input[start..start + ZC + k - 1]
                            } else {
                                // The last, partial run: copy it beside zeros.
                                padded.fill(0.0);
                                padded[..run + k - 1].copy_from_slice(&input[start..start + run + k - 1]);
                                &padded[..ZC + k - 1]
                            };
                            let tap0 = ((ci * k + i) * k + j) * k;
                            accumulate_row(&mut acc, row, &w_block[tap0 * CO..][..k * CO]);
                        }
                    }
                }
                for (c, a) in acc.iter().enumerate().take(cos) {
                    write(co0 + c, y * oz + z0, &a[..run]);
                }
            }
        }
    }
}

/// One row of kernel taps along z: `acc[c][l] += Σ_kk w[kk][c] · row[l + kk]`.
#[inline(always)]
fn accumulate_row<const CO: usize, const ZC: usize>(acc: &mut [[f32; ZC]; CO], row: &[f32], w: &[f32]) {
    let k = w.len() / CO;
    for kk in 0..k {
        let v: &[f32; ZC] = row[kk..kk + ZC].try_into().unwrap();
        let wk: &[f32; CO] = w[kk * CO..kk * CO + CO].try_into().unwrap();
        for c in 0..CO {
            for l in 0..ZC {
                acc[c][l] += wk[c] * v[l];
            }
        }
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
