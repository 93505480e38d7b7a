//! The normalization layer's train/eval semantics, checked number for number against
//! PyTorch's documented batch-norm behaviour computed by hand in f64.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use cta2mbf::models::init::Initializer;
use cta2mbf::models::{Norm, NormKind, NormMode};

const EPS: f64 = 1e-5;

/// Two channels, batch 2, 2×2×1 voxels: 8 values per channel with distinct statistics.
fn input(device: &Device) -> (Tensor<5>, Vec<Vec<f64>>) {
    let mut values = vec![0f32; 2 * 2 * 4];
    let mut per_channel = vec![Vec::new(), Vec::new()];
    for b in 0..2 {
        for c in 0..2 {
            for v in 0..4 {
                let x = (b * 4 + v) as f32 * (1.5 + c as f32) - 3.0 * c as f32 + ((v * v) as f32 * 0.25);
                values[(b * 2 + c) * 4 + v] = x;
                per_channel[c].push(x as f64);
            }
        }
    }
    (Tensor::<1>::from_data(TensorData::new(values, [16]), device).reshape([2, 2, 2, 2, 1]), per_channel)
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let ss = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    (mean, ss / n, ss / (n - 1.0))
}

fn vec1(t: Tensor<1>) -> Vec<f64> {
    t.into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn set_running(norm: &Norm, mean: [f32; 2], var: [f32; 2], device: &Device) {
    norm.running_mean.as_ref().unwrap().update(Tensor::from_data(TensorData::new(mean.to_vec(), [2]), device));
    norm.running_var.as_ref().unwrap().update(Tensor::from_data(TensorData::new(var.to_vec(), [2]), device));
}

#[test]
fn train_mode_updates_running_stats_with_unbiased_variance() {
    let device = Device::flex();
    let mut init = Initializer::new(3, &device);
    let norm = Norm::new(&mut init, NormKind::Batch, 2, true);
    set_running(&norm, [0.5, -2.0], [2.0, 0.25], &device);
    let (x, per_channel) = input(&device);
    let y = norm.forward(x, NormMode::Train);
    let (rm, rv) = norm.running_stats().unwrap();
    let (rm, rv) = (vec1(rm), vec1(rv));
    let gamma = vec1(norm.weight.as_ref().unwrap().val());
    let old_mean = [0.5, -2.0];
    let old_var = [2.0, 0.25];
    let yv: Vec<f64> = y.into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
    for c in 0..2 {
        let (mean, biased, unbiased) = stats(&per_channel[c]);
        let expect_mean = 0.9 * old_mean[c] + 0.1 * mean;
        let expect_var = 0.9 * old_var[c] + 0.1 * unbiased;
        assert!((rm[c] - expect_mean).abs() < 1e-5, "running mean {c}: {} vs {expect_mean}", rm[c]);
        assert!((rv[c] - expect_var).abs() < 1e-4 * expect_var.abs().max(1.0), "running var {c}: {} vs {expect_var}", rv[c]);
        // Output: batch statistics with the biased variance.
        for (i, x) in per_channel[c].iter().enumerate() {
            let (b, v) = (i / 4, i % 4);
            let expect = (x - mean) / (biased + EPS).sqrt() * gamma[c];
            let got = yv[(b * 2 + c) * 4 + v];
            assert!((got - expect).abs() < 1e-4, "output {c},{i}: {got} vs {expect}");
        }
    }
}

#[test]
fn eval_mode_normalizes_with_running_stats() {
    let device = Device::flex();
    let mut init = Initializer::new(4, &device);
    let norm = Norm::new(&mut init, NormKind::Batch, 2, true);
    set_running(&norm, [1.0, -1.0], [4.0, 0.5], &device);
    let (x, per_channel) = input(&device);
    let yv: Vec<f32> = norm.forward(x, NormMode::Eval).into_data().try_to_vec().unwrap();
    let gamma = vec1(norm.weight.as_ref().unwrap().val());
    for c in 0..2 {
        let (m, v) = ([1.0, -1.0][c], [4.0, 0.5][c]);
        for (i, x) in per_channel[c].iter().enumerate() {
            let expect = (x - m) / (v + EPS).sqrt() * gamma[c];
            let got = yv[((i / 4) * 2 + c) * 4 + i % 4] as f64;
            assert!((got - expect).abs() < 1e-4, "{got} vs {expect}");
        }
    }
    let (rm, rv) = norm.running_stats().unwrap();
    assert_eq!(vec1(rm), vec![1.0, -1.0]);
    assert_eq!(vec1(rv), vec![4.0, 0.5]);
}

fn bits(t: Tensor<1>) -> Vec<u32> {
    t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn eval_mode_training_step_moves_gamma_beta_not_running_stats() {
    let device = Device::flex().autodiff();
    let mut init = Initializer::new(5, &device);
    let norm = Norm::new(&mut init, NormKind::Batch, 2, true);
    set_running(&norm, [0.3, -0.7], [1.7, 0.9], &device);
    let (rm0, rv0) = norm.running_stats().unwrap();
    let (rm0, rv0) = (bits(rm0), bits(rv0));
    let gamma0 = bits(norm.weight.as_ref().unwrap().val());
    let beta0 = bits(norm.bias.as_ref().unwrap().val());

    let (x, _) = input(&device);
    let target = Tensor::<5>::ones([2, 2, 2, 2, 1], &device);
    let loss = (norm.forward(x, NormMode::Eval) - target).abs().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &norm);
    let mut optim = AdamConfig::new().init();
    let norm = optim.step(1e-2, norm, grads);

    let (rm1, rv1) = norm.running_stats().unwrap();
    assert_eq!(bits(rm1), rm0, "running mean moved in eval mode");
    assert_eq!(bits(rv1), rv0, "running var moved in eval mode");
    assert_ne!(bits(norm.weight.as_ref().unwrap().val()), gamma0, "gamma got no gradient");
    assert_ne!(bits(norm.bias.as_ref().unwrap().val()), beta0, "beta got no gradient");
    let _ = norm.valid();
}

#[test]
fn train_mode_step_without_gradients_still_updates_running_stats() {
    // The mode, not the device, decides: a plain (non-autodiff) device in train mode updates.
    let device = Device::flex();
    let mut init = Initializer::new(6, &device);
    let norm = Norm::new(&mut init, NormKind::Batch, 2, true);
    let (x, per_channel) = input(&device);
    let _ = norm.forward(x, NormMode::Train);
    let (rm, _) = norm.running_stats().unwrap();
    let rm = vec1(rm);
    let (mean, _, _) = stats(&per_channel[1]);
    assert!((rm[1] - 0.1 * mean).abs() < 1e-5);
}

#[test]
fn instance_norm_uses_each_sample_and_channel() {
    let device = Device::flex();
    let mut init = Initializer::new(7, &device);
    let norm = Norm::new(&mut init, NormKind::Instance, 2, true);
    assert!(norm.weight.is_none() && norm.running_mean.is_none());
    let (x, _) = input(&device);
    let xv: Vec<f32> = x.clone().into_data().try_to_vec().unwrap();
    let yv: Vec<f32> = norm.forward(x, NormMode::Eval).into_data().try_to_vec().unwrap();
    for group in 0..4 {
        let v: Vec<f64> = xv[group * 4..group * 4 + 4].iter().map(|&a| a as f64).collect();
        let (mean, biased, _) = stats(&v);
        for i in 0..4 {
            let expect = (v[i] - mean) / (biased + EPS).sqrt();
            assert!((yv[group * 4 + i] as f64 - expect).abs() < 1e-4);
        }
    }
}
