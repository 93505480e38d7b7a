//! Data parallelism shared by the training loops: a batch is cut into one share per device,
//! each device runs its share's forward and backward passes on its own copy of the network in
//! its own thread, and one optimizer step applies the gradients of all devices (summed by
//! Burn's `step_multi`, each device's loss scaled by its share of the batch), as PyTorch's
//! DistributedDataParallel does within one machine.
//!
//! What differs from one device on the whole batch: train-mode batch norm normalizes with each
//! device's own samples (as DDP without SyncBatchNorm), its running statistics become the
//! average of the devices' updates (Burn's `RunningState`), and a loss that is not a mean over
//! samples (a masked mean, a soft Dice over the batch) becomes the mean of the devices' losses.
//!
//! Across processes (MPI ranks, [`crate::distributed`]) the same step is taken on every rank:
//! each rank's gradients (its devices' summed on the host) and its batch-norm running
//! statistics are averaged over the ranks with one all-reduce each before the optimizer steps,
//! so every rank holds the same parameters afterwards ([`fingerprint`] checks it). Burn 0.22's
//! own all-reduce (`burn::tensor::distributed`) exists only for CUDA through NCCL.

use crate::distributed::Group;
use crate::models::norm::settle_running_stats;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

/// The batch cut into contiguous shares, one per device (fewer when the batch is short), each
/// with its device and its fraction of the batch.
pub fn shares<'a, T>(batch: &'a [T], devices: &'a [Device]) -> Vec<(&'a [T], &'a Device, f64)> {
    let per = batch.len().div_ceil(devices.len().max(1)).max(1);
    batch.chunks(per).zip(devices).map(|(part, device)| (part, device, part.len() as f64 / batch.len() as f64)).collect()
}

/// `f` on every item: inline for one, one thread each for several (each device works on its
/// own queue).
pub fn on_devices<I: Send, T: Send>(items: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T> {
    if items.len() == 1 {
        return items.into_iter().map(f).collect();
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items.into_iter().map(|item| scope.spawn(move || f(item))).collect();
        handles.into_iter().map(|h| h.join().expect("a device thread panicked")).collect()
    })
}

/// `module` on `device` for one device's share: itself when training on one device, else a
/// copy on that device whose gradients come back by parameter id.
pub fn replica<M: Module + Clone>(module: &M, device: &Device, parallel: bool) -> M {
    if parallel { module.clone().fork(device) } else { module.clone() }
}

/// One optimizer step with the gradients of one device, or of several summed; in a group of
/// several ranks, with the gradients and running statistics averaged over the ranks first.
pub fn optimizer_step<M: Module>(optim: &mut ModuleOptimizer, lr: f64, module: M, grads: Vec<(GradientsParams, Device)>, group: &Group) -> M {
    if group.is_distributed() {
        let (module, averaged) = average_over_ranks(module, &grads, group);
        return optim.step(lr, module, averaged);
    }
    if grads.len() == 1 {
        let (g, _) = grads.into_iter().next().expect("one");
        return optim.step(lr, module, g);
    }
    optim.step_multi(lr, module, MultiGradientsParams { grads })
}

/// What one parameter contributes to the exchanged buffers.
enum Slot {
    /// A gradient: its place in the `f32` buffer, its shape and the device it lives on.
    Gradient { start: usize, shape: Vec<usize>, device: Device },
    /// Running statistics (a tensor that takes no gradient): its place in the `f64` buffer.
    Statistic { start: usize, shape: Vec<usize> },
}

/// The gradients of this process's devices summed per parameter into one flat buffer, and the
/// running statistics into another, in the module's visiting order (the same on every rank).
struct Flatten<'a> {
    grads: &'a [(GradientsParams, Device)],
    gradients: Vec<f32>,
    statistics: Vec<f64>,
    slots: HashMap<ParamId, Slot>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut sum: Option<(Vec<f32>, Vec<usize>, Device)> = None;
        for (g, _) in self.grads {
            if let Some(t) = g.get::<D>(param.id) {
                let (device, shape) = (t.device(), t.shape().to_vec());
                let values = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 gradient");
                match &mut sum {
                    Some((s, _, _)) => s.iter_mut().zip(values).for_each(|(a, b)| *a += b),
                    None => sum = Some((values, shape, device)),
                }
            }
        }
        if let Some((values, shape, device)) = sum {
            self.slots.insert(param.id, Slot::Gradient { start: self.gradients.len(), shape, device });
            self.gradients.extend(values);
        } else if !param.val().is_require_grad() {
            let t = param.val();
            let shape = t.shape().to_vec();
            self.slots.insert(param.id, Slot::Statistic { start: self.statistics.len(), shape });
            self.statistics.extend(t.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 statistics"));
        }
    }
}

/// The averaged buffers put back: the gradients as a new [`GradientsParams`], the running
/// statistics into the module.
struct Unflatten<'a> {
    gradients: &'a [f32],
    statistics: &'a [f64],
    slots: &'a HashMap<ParamId, Slot>,
    out: GradientsParams,
}

impl ModuleMapper for Unflatten<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.slots.get(&param.id) {
            Some(Slot::Gradient { start, shape, device }) => {
                let n: usize = shape.iter().product();
                let data = TensorData::new(self.gradients[*start..start + n].to_vec(), shape.clone());
                self.out.register::<D>(param.id, Tensor::from_data(data, device));
                param
            }
            Some(Slot::Statistic { start, shape }) => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = self.statistics[*start..start + n].iter().map(|&v| v as f32).collect();
                let data = TensorData::new(values, shape.clone());
                param.map(|t| Tensor::from_data(data, &t.device()))
            }
            None => param,
        }
    }
}

/// This rank's gradients (summed over its devices) and its module's running statistics,
/// averaged over the ranks of `group`: the gradients in one `f32` all-reduce, the statistics in
/// one `f64` all-reduce (so statistics equal on every rank, as in eval-mode training, come back
/// unchanged). Every rank must call it at the same point with the same module structure.
fn average_over_ranks<M: Module>(module: M, grads: &[(GradientsParams, Device)], group: &Group) -> (M, GradientsParams) {
    settle_running_stats(&module);
    let mut flat = Flatten { grads, gradients: Vec::new(), statistics: Vec::new(), slots: HashMap::new() };
    module.visit(&mut flat);
    let Flatten { mut gradients, mut statistics, slots, .. } = flat;
    group.sum_f32(&mut gradients);
    let n = group.size() as f32;
    gradients.iter_mut().for_each(|g| *g /= n);
    group.mean_f64(&mut statistics);
    let mut back = Unflatten { gradients: &gradients, statistics: &statistics, slots: &slots, out: GradientsParams::new() };
    let module = module.map(&mut back);
    (module, back.out)
}

/// A hash of every float tensor of `module` (parameters and running statistics), in visiting
/// order: equal on two ranks exactly when their networks are bit-identical.
pub fn fingerprint<M: Module>(module: &M) -> u64 {
    struct Hash(u64);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            for &b in data.as_bytes() {
                self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    settle_running_stats(module);
    let mut h = Hash(0xcbf2_9ce4_8422_2325);
    module.visit(&mut h);
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::threads::thread_group;
    use crate::models::init::Initializer;
    use crate::models::{Norm, NormKind, NormMode};
    use burn::optim::AdamConfig;

    /// Two ranks, each a batch-norm layer fed its own sample in train mode, then one averaged
    /// optimizer step: both hold the mean of their running statistics (and the same gamma).
    #[test]
    fn running_statistics_and_gradients_are_averaged_over_the_ranks() {
        let samples = [[1.0f32, 2.0, 4.0, 9.0], [-3.0, 0.0, 1.0, 2.0]];
        let results: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = thread_group(2)
                .into_iter()
                .map(|group| {
                    s.spawn(move || {
                        let device = Device::flex().autodiff();
                        let norm = Norm::new(&mut Initializer::new(3, &device), NormKind::Batch, 1, true);
                        let x = Tensor::<5>::from_data(TensorData::new(samples[group.rank()].to_vec(), [1, 1, 4, 1, 1]), &device);
                        let loss = norm.forward(x, NormMode::Train).mul_scalar(group.rank() as f64 + 1.0).sum();
                        let grads = GradientsParams::from_grads(loss.backward(), &norm);
                        let mut optim = AdamConfig::new().init();
                        let norm = optimizer_step(&mut optim, 0.1, norm, vec![(grads, device)], &group);
                        let (mean, var) = norm.running_stats().unwrap();
                        let v = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
                        (v(mean), v(var), v(norm.weight.as_ref().unwrap().val()))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // PyTorch's update per rank: 0.9·old + 0.1·batch (the variance unbiased over 4 values).
        let stats = |x: &[f32; 4]| {
            let m = x.iter().sum::<f32>() / 4.0;
            (m, x.iter().map(|v| (v - m).powi(2)).sum::<f32>() / 3.0)
        };
        let ((m0, v0), (m1, v1)) = (stats(&samples[0]), stats(&samples[1]));
        let mean = 0.5 * (0.1 * m0 + 0.1 * m1);
        let var = 0.5 * (0.9 + 0.1 * v0 + 0.9 + 0.1 * v1);
        for (m, v, gamma) in &results {
            assert!((m[0] - mean).abs() < 1e-6 && (v[0] - var).abs() < 1e-5, "{m:?} {v:?} vs {mean} {var}");
            assert_eq!(gamma, &results[0].2);
        }
    }
}
