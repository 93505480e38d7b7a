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
//! Burn 0.22's all-reduce (`burn::tensor::distributed`) exists only for CUDA through NCCL; where a
//! build has it, it replaces the sum in [`optimizer_step`]. Training across machines is not offered.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::tensor::Device;

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

/// One optimizer step with the gradients of one device, or of several summed.
pub fn optimizer_step<M: Module>(optim: &mut ModuleOptimizer, lr: f64, module: M, grads: Vec<(GradientsParams, Device)>) -> M {
    if grads.len() == 1 {
        let (g, _) = grads.into_iter().next().expect("one");
        return optim.step(lr, module, g);
    }
    optim.step_multi(lr, module, MultiGradientsParams { grads })
}
