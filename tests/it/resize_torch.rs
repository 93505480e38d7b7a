//! The trilinear resampler against PyTorch's `F.interpolate(mode='trilinear',
//! align_corners=True)` on committed fixtures (made by `scripts/resize_fixtures.py`; no torch
//! needed here), and its gradient against finite differences.

use crate::common;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use cta2mbf::ops::resize_trilinear;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn dims<const N: usize>(v: &Value) -> [usize; N] {
    let d: Vec<usize> = v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    d.try_into().unwrap()
}

#[test]
fn matches_pytorch_trilinear_align_corners() {
    let text = std::fs::read_to_string(common::repo().join("tests/fixtures/resize_trilinear.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let device = Device::flex();
    let mut worst = 0.0f32;
    for case in doc["cases"].as_array().unwrap() {
        let shape: [usize; 5] = dims(&case["shape"]);
        let size: [usize; 3] = dims(&case["size"]);
        let x: Tensor<5> = Tensor::from_data(TensorData::new(floats(&case["input"]), shape), &device);
        let y = resize_trilinear(x, size, true);
        assert_eq!(y.dims(), [shape[0], shape[1], size[0], size[1], size[2]]);
        let got = y.into_data().try_to_vec::<f32>().unwrap();
        let want = floats(&case["output"]);
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("{shape:?} -> {size:?}: max abs error {err:.2e} (standard normal input)");
        worst = worst.max(err);
    }
    assert!(worst < 1e-5, "max abs error {worst}");
}

#[test]
fn gradient_matches_finite_differences() {
    // L(x) = Σ w · resize(x) with fixed random weights w; dL/dx by autodiff against central
    // differences on every input voxel (the map is linear, so differences are exact up to rounding).
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let shape = [1, 2, 4, 3, 5];
    let size = [6, 5, 2];
    let x0: Tensor<5> = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let w: Tensor<5> = Tensor::random([1, 2, 6, 5, 2], Distribution::Normal(0.0, 1.0), &device);
    let loss = |x: Tensor<5>| -> f64 { (resize_trilinear(x, size, true) * w.clone()).sum().into_scalar::<f32>() as f64 };

    let x: Tensor<5> = Tensor::from_data(x0.clone().into_data(), &ad).require_grad();
    let l = (resize_trilinear(x.clone(), size, true) * Tensor::from_data(w.clone().into_data(), &ad)).sum();
    let grad = x.grad(&l.backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();

    let base = x0.into_data().try_to_vec::<f32>().unwrap();
    let h = 0.5f32;
    let mut worst = 0.0f64;
    for i in 0..base.len() {
        let bump = |d: f32| {
            let mut v = base.clone();
            v[i] += d;
            loss(Tensor::from_data(TensorData::new(v, shape), &device))
        };
        let fd = (bump(h) - bump(-h)) / (2.0 * h as f64);
        worst = worst.max((fd - grad[i] as f64).abs());
    }
    assert!(worst < 1e-3, "largest difference between autodiff and finite differences: {worst}");
}
