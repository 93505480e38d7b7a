//! The engine judged through a mock task — one weight `w` fitted to `y = 3x` by Adam, with
//! scripted validation values and failures on request: a run killed inside an epoch or
//! between its metrics line and its checkpoint resumes to the uninterrupted run's weights,
//! state and metrics; `metrics.jsonl` is trimmed to the checkpoint; `best/` follows the
//! monitored value (ties keep the earlier epoch; nothing without a monitor).

use super::engine::{self, Monitored, RunReport, Save, Task};
use super::metrics::{LossTerm, Losses};
use super::progress::Log;
use super::run::{RunOptions, Setup, TaskConfig, TrainRequest, scalar};
use crate::config::run::UnknownKeys;
use crate::config::{RunConfig, RunSettings};
use crate::data::{Pair, PairPattern};
use crate::device::DeviceChoice;
use crate::distributed::Group;
use crate::error::{Error, Result};
use crate::models::init::Initializer;
use crate::store::folder::{load_module, read_json, save_folder, save_module, save_optim, write_json};
use crate::store::{LATEST, RunState, STATE};
use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MockConfig {
    #[serde(flatten)]
    run: RunSettings,
    #[serde(flatten)]
    unknown: UnknownKeys,
}

impl RunConfig for MockConfig {
    fn run(&self) -> &RunSettings {
        &self.run
    }
    fn unknown(&self) -> &UnknownKeys {
        &self.unknown
    }
}

impl TaskConfig for MockConfig {
    fn check(&self, _on_host: bool) -> Result<()> {
        self.run.validate(self.beta1())
    }
    fn case_files(&self) -> PairPattern {
        PairPattern { src: "x".into(), dst: "y".into(), mask: None }
    }
    fn beta1(&self) -> f64 {
        0.9
    }
}

#[derive(Module, Debug)]
struct Weight {
    w: Param<Tensor<1>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MockLoss {
    Mse,
}

impl LossTerm for MockLoss {
    const TERMS: &'static [(Self, &'static str, &'static str)] = &[(MockLoss::Mse, "mse", "loss_mse")];
}

#[derive(Debug, Clone, Default, Serialize)]
struct MockMetrics {
    /// `None` after an epoch without validation.
    val: Option<f64>,
}

/// What the mock does besides fitting `w`.
#[derive(Clone, Default)]
struct Script {
    /// The validation value of each epoch (epoch e reads `values[e − 1]`).
    values: Vec<f64>,
    /// Monitor the value, larger being better (`Some(true)`) or smaller.
    higher_is_better: Option<bool>,
    /// Fail the validation of this epoch (a kill inside the epoch).
    fail_validation: Option<usize>,
    /// Fail this epoch's `latest` (a kill between the metrics line and the checkpoint).
    fail_latest: Option<usize>,
    /// The config's `val_every` (default 1).
    val_every: Option<usize>,
}

struct Mock<const BEST: bool> {
    optim: ModuleOptimizer,
    device: burn::tensor::Device,
    epoch: usize,
    script: Script,
    group: Group,
}

impl<const BEST: bool> Task for Mock<BEST> {
    const SAVES_BEST: bool = BEST;
    type Config = MockConfig;
    type Model = Weight;
    type Sample = f32;
    type Loss = MockLoss;
    type Metrics = MockMetrics;

    fn begin_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }

    fn preparer(&self) -> Arc<dyn Fn(&Pair, &mut ChaCha8Rng) -> Result<f32> + Send + Sync> {
        Arc::new(|pair, rng| Ok(pair.pid.len() as f32 * rng.random::<f32>()))
    }

    fn step(&mut self, model: Weight, batch: &[f32], lr: f64) -> (Weight, Losses<MockLoss>, Tensor<5>) {
        let x = Tensor::<1>::from_data(TensorData::new(batch.to_vec(), [batch.len()]), &self.device);
        let pred = x.clone() * model.w.val();
        let loss = (pred.clone() - x.mul_scalar(3.0)).powi_scalar(2).mean();
        let mut losses = Losses::default();
        losses.set(MockLoss::Mse, scalar(&loss));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = super::parallel::optimizer_step(&mut self.optim, lr, model, vec![(grads, self.device.clone())], &self.group);
        (model, losses, pred.detach().reshape([1, 1, batch.len(), 1, 1]))
    }

    fn fingerprint(&self, model: &Weight) -> u64 {
        super::parallel::fingerprint(model)
    }

    fn validate(&mut self, _model: &Weight, _tb: &mut super::tensorboard::EventWriter, _step: usize) -> Result<MockMetrics> {
        if self.script.fail_validation == Some(self.epoch) {
            return Err(Error::invalid("killed"));
        }
        Ok(MockMetrics { val: Some(self.script.values[self.epoch - 1]) })
    }

    fn monitored(&self, m: &MockMetrics, _means: &Losses<MockLoss>) -> Option<Monitored> {
        Some(Monitored { value: m.val.expect("monitored after a validation only"), higher_is_better: self.script.higher_is_better? })
    }

    fn save(&self, model: &Weight, run_dir: &Path, label: &str, kind: Save, state: &RunState<MockConfig>) -> Result<()> {
        if label == LATEST && self.script.fail_latest == Some(state.epoch) {
            return Err(Error::invalid("killed"));
        }
        save_folder(run_dir, label, |tmp| {
            save_module(model, &tmp.join("w.bpk"))?;
            if kind == Save::Resume {
                save_optim(&self.optim, &tmp.join("optim.bpk"))?;
            }
            write_json(&tmp.join(STATE), state)
        })
        .map(drop)
    }

    fn summary(&self, means: &Losses<MockLoss>, _m: &MockMetrics, best: bool) -> String {
        format!("{}{}", means.message(), if best { " best" } else { "" })
    }
}

/// Three case folders (ids of different lengths, so that samples differ by case) under `dir`.
fn cases(dir: &Path) -> PathBuf {
    let root = dir.join("cases");
    for pid in ["a", "bb", "ccc"] {
        std::fs::create_dir_all(root.join(pid)).unwrap();
        for f in ["x", "y"] {
            std::fs::write(root.join(pid).join(f), b"").unwrap();
        }
    }
    root
}

/// Train the mock `name` in `dir` to epoch 6 (linear decay over the last 3), resuming when
/// `resume`; the printed lines are pushed to `lines`.
fn train<const BEST: bool>(dir: &Path, name: &str, resume: bool, script: &Script, lines: &Arc<Mutex<Vec<String>>>) -> Result<RunReport<MockLoss, MockMetrics>> {
    train_in::<BEST>(dir, name, resume, script, lines, (2, 3), Group::solo())
}

/// [`train`] with `(batch_size, samples_per_volume)` as one rank of `group`.
fn train_in<const BEST: bool>(dir: &Path, name: &str, resume: bool, script: &Script, lines: &Arc<Mutex<Vec<String>>>, (batch, per_volume): (usize, usize), group: Group) -> Result<RunReport<MockLoss, MockMetrics>> {
    let root = if group.is_root() { cases(dir) } else { dir.join("cases") };
    let config: MockConfig = serde_json::from_value(serde_json::json!({
        "name": name, "data_root": root, "lr": 0.1, "lr_policy": "linear", "n_epochs": 3, "n_epochs_decay": 3,
        "batch_size": batch, "samples_per_volume": per_volume, "save_epoch_freq": 2, "workers": 1, "prefetch": 1, "seed": 7,
        "val_every": script.val_every.unwrap_or(1),
    }))
    .unwrap();
    let sink = lines.clone();
    let run = RunOptions { checkpoints_dir: dir.join("ck"), continue_train: resume, quiet: true, tag: None, log: Log::new(move |l| sink.lock().unwrap().push(l.to_string())) };
    let setup = Setup::open(&TrainRequest { config, device: DeviceChoice::Cpu, devices: Vec::new(), run, group: group.clone() }, |_, _| Ok(()))?;
    let device = setup.replicas[0].clone();
    let mut model = Weight { w: Initializer::new(0, &device).constant([1], 0.5) };
    let loaded = match setup.resume() {
        Some(dir) => {
            load_module(&mut model, &dir.join("w.bpk"))?;
            Some(read_json(&dir.join(STATE))?)
        }
        None => None,
    };
    let state = setup.state(loaded);
    let task = Mock::<BEST> { optim: setup.optimizer("optim.bpk")?, device, epoch: 0, script: script.clone(), group };
    engine::run(&setup, task, model, state, &[])
}

fn weight(checkpoint: &Path) -> f32 {
    let mut m = Weight { w: Initializer::new(0, &burn::tensor::Device::flex()).constant([1], 0.0) };
    load_module(&mut m, &checkpoint.join("w.bpk")).unwrap();
    m.w.val().into_scalar::<f32>()
}

/// `metrics.jsonl` without the wall-clock seconds.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v.as_object_mut().unwrap().remove("seconds").unwrap().is_f64());
            v
        })
        .collect()
}

fn state(checkpoint: &Path) -> serde_json::Value {
    let mut s: serde_json::Value = read_json(&checkpoint.join(STATE)).unwrap();
    s["config"]["data_root"] = serde_json::Value::Null;
    s
}

fn lines() -> Arc<Mutex<Vec<String>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn monitored(values: &[f64], higher_is_better: Option<bool>) -> Script {
    Script { values: values.to_vec(), higher_is_better, ..Script::default() }
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let script = monitored(&[0.5, 0.4, 0.3, 0.2, 0.1, 0.0], Some(false));
    let full = tempfile::tempdir().unwrap();
    let report = train::<false>(full.path(), "m", false, &script, &lines()).unwrap();
    assert_eq!((report.start_epoch, report.epoch), (0, 6));
    assert_eq!(report.split, (vec!["a".into(), "bb".into(), "ccc".into()], vec![]));
    let full_run = full.path().join("ck/m");
    let expected = metrics(&full_run);
    assert_eq!(expected.len(), 6);
    // The envelope around the task's metrics, keys in order; lr of the linear policy.
    let text = std::fs::read_to_string(full_run.join("metrics.jsonl")).unwrap();
    let line = text.lines().nth(3).unwrap();
    let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key}: {line}"));
    assert!(line.starts_with(r#"{"epoch":4,"lr":"#) && at("lr") < at("loss_mse") && at("loss_mse") < at("val") && at("val") < at("seconds"), "{line}");
    assert!((expected[3]["lr"].as_f64().unwrap() - 0.075).abs() < 1e-12, "{line}");
    assert!(weight(&full_run.join(LATEST)) > 2.0, "w did not move towards 3: {}", weight(&full_run.join(LATEST)));

    // Killed inside epoch 4 (after its steps, before its line), then resumed.
    let cut = tempfile::tempdir().unwrap();
    let killed = Script { fail_validation: Some(4), ..script.clone() };
    assert!(train::<false>(cut.path(), "m", false, &killed, &lines()).is_err());
    let run = cut.path().join("ck/m");
    assert_eq!(metrics(&run).len(), 3);
    assert_eq!(state(&run.join(LATEST))["epoch"], 3);
    let report = train::<false>(cut.path(), "m", true, &script, &lines()).unwrap();
    assert_eq!((report.start_epoch, report.epoch), (3, 6));
    assert_eq!(metrics(&run), expected);
    assert_eq!(weight(&run.join(LATEST)).to_bits(), weight(&full_run.join(LATEST)).to_bits());
    assert_eq!(state(&run.join(LATEST)), state(&full_run.join(LATEST)));
    for numbered in ["epoch_002", "epoch_004", "epoch_006"] {
        assert_eq!(weight(&run.join(numbered)).to_bits(), weight(&full_run.join(numbered)).to_bits(), "{numbered}");
    }
}

#[test]
fn resuming_trims_the_lines_of_epochs_after_the_checkpoint() {
    let script = monitored(&[1.0; 6], None);
    let full = tempfile::tempdir().unwrap();
    train::<false>(full.path(), "m", false, &script, &lines()).unwrap();
    // Killed after epoch 5's line and before its `latest`: the run resumes from epoch 4.
    let cut = tempfile::tempdir().unwrap();
    let killed = Script { fail_latest: Some(5), ..script.clone() };
    assert!(train::<false>(cut.path(), "m", false, &killed, &lines()).is_err());
    let run = cut.path().join("ck/m");
    assert_eq!(metrics(&run).iter().map(|m| m["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(state(&run.join(LATEST))["epoch"], 4);
    let report = train::<false>(cut.path(), "m", true, &script, &lines()).unwrap();
    assert_eq!(report.start_epoch, 4);
    assert_eq!(metrics(&run), metrics(&full.path().join("ck/m")));
    // A run that resumes with nothing left to do keeps its lines.
    train::<false>(cut.path(), "m", true, &script, &lines()).unwrap();
    assert_eq!(metrics(&run).len(), 6);
}

#[test]
fn best_follows_the_monitored_value_and_a_tie_keeps_the_earlier_epoch() {
    for (higher, values, best) in [(true, [0.5, 0.7, 0.7, 0.6, 0.9, 0.9], (0.9, 5)), (false, [0.5, 0.3, 0.3, 0.4, 0.3, 0.35], (0.3, 2))] {
        let dir = tempfile::tempdir().unwrap();
        let printed = lines();
        let report = train::<true>(dir.path(), "m", false, &monitored(&values, Some(higher)), &printed).unwrap();
        assert_eq!(report.best, Some(best));
        let run = dir.path().join("ck/m");
        assert_eq!(state(&run.join("best"))["epoch"], best.1);
        assert_eq!(state(&run.join(LATEST))["best"], serde_json::json!([best.0, best.1]));
        assert!(!run.join("best/optim.bpk").exists(), "best/ holds the network only");
        let improved: Vec<usize> = printed.lock().unwrap().iter().enumerate().filter(|(_, l)| l.contains(" best [")).map(|(i, _)| i + 1).collect();
        assert_eq!(improved, if higher { vec![1, 2, 5] } else { vec![1, 2] });
    }
}

#[test]
fn without_a_monitor_or_a_best_checkpoint_no_best_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let report = train::<true>(dir.path(), "none", false, &monitored(&[0.0; 6], None), &lines()).unwrap();
    assert_eq!(report.best, None);
    assert!(!dir.path().join("ck/none/best").exists());
    assert_eq!(state(&dir.path().join("ck/none/latest"))["best"], serde_json::Value::Null);
    // Monitored by a task that keeps no `best/` (the generator): recorded in the state only.
    let report = train::<false>(dir.path(), "kept", false, &monitored(&[0.3, 0.1, 0.2, 0.2, 0.2, 0.2], Some(false)), &lines()).unwrap();
    assert_eq!(report.best, Some((0.1, 2)));
    assert!(!dir.path().join("ck/kept/best").exists());
}

#[test]
fn validation_every_few_epochs_and_after_the_last_decides_best_alone() {
    // Validated after epochs 4 and 6 only: epoch 1's 0.1 is never seen, so `best` is epoch 6.
    let script = Script { val_every: Some(4), ..monitored(&[0.1, 0.5, 0.5, 0.4, 0.3, 0.35], Some(false)) };
    let dir = tempfile::tempdir().unwrap();
    let printed = lines();
    let report = train::<true>(dir.path(), "m", false, &script, &printed).unwrap();
    assert_eq!(report.best, Some((0.35, 6)));
    let run = dir.path().join("ck/m");
    let vals: Vec<serde_json::Value> = metrics(&run).iter().map(|m| m["val"].clone()).collect();
    assert_eq!(vals, [serde_json::Value::Null, serde_json::Value::Null, serde_json::Value::Null, 0.4.into(), serde_json::Value::Null, 0.35.into()]);
    assert_eq!(state(&run.join("best"))["epoch"], 6);
    let improved: Vec<usize> = printed.lock().unwrap().iter().enumerate().filter(|(_, l)| l.contains(" best [")).map(|(i, _)| i + 1).collect();
    assert_eq!(improved, [4, 6]);
}

/// `train_in` on `ranks` threads standing for MPI ranks (rank 0 creates the cases first); a
/// rank that fails aborts the job, as the command line does (the others then end in a panic,
/// reported here as an error).
fn train_ranks(dir: &Path, name: &str, resume: bool, script: &Script, sizes: (usize, usize), ranks: usize) -> Vec<(Result<RunReport<MockLoss, MockMetrics>>, Vec<String>)> {
    cases(dir);
    std::thread::scope(|s| {
        let handles: Vec<_> = crate::distributed::threads::thread_group(ranks)
            .into_iter()
            .map(|group| {
                s.spawn(move || {
                    let printed = lines();
                    let report = train_in::<true>(dir, name, resume, script, &printed, sizes, group.clone());
                    if report.is_err() {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.abort(1)));
                    }
                    let printed = printed.lock().unwrap().clone();
                    (report, printed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| (Err(Error::invalid("ended by another rank's abort")), Vec::new()))).collect()
    })
}

#[test]
fn two_ranks_with_batch_1_take_the_steps_of_one_process_with_batch_2() {
    let script = monitored(&[0.5, 0.4, 0.6, 0.2, 0.3, 0.1], Some(false));
    let one = tempfile::tempdir().unwrap();
    train_in::<true>(one.path(), "m", false, &script, &lines(), (2, 2), Group::solo()).unwrap();
    let two = tempfile::tempdir().unwrap();
    let ranks = train_ranks(two.path(), "m", false, &script, (1, 2), 2);
    let (a, b) = (one.path().join("ck/m"), two.path().join("ck/m"));
    for (rank, (report, printed)) in ranks.iter().enumerate() {
        let report = report.as_ref().unwrap();
        assert_eq!((report.epoch, report.best), (6, Some((0.1, 6))), "rank {rank}");
        // Rank 0 alone reports.
        assert_eq!((report.last.is_some(), printed.len() == 6), (rank == 0, rank == 0), "rank {rank}: {printed:?}");
    }
    // The same sample order and streams, gradients averaged over the ranks: the same weights
    // (up to the order of the sums) and the same mean losses, per epoch.
    let (wa, wb) = (weight(&a.join(LATEST)), weight(&b.join(LATEST)));
    assert!(((wa - wb) / wa).abs() <= 1e-6, "{wa} vs {wb}");
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!((&x["epoch"], &x["lr"], &x["val"]), (&y["epoch"], &y["lr"], &y["val"]));
        let (lx, ly) = (x["loss_mse"].as_f64().unwrap(), y["loss_mse"].as_f64().unwrap());
        assert!((lx - ly).abs() <= 1e-5 * lx.abs().max(1e-3), "{x} vs {y}");
    }
    assert_eq!(state(&a.join(LATEST))["global_step"], state(&b.join(LATEST))["global_step"]);
    assert!(b.join("best").is_dir() && b.join("epoch_004").is_dir());
}

#[test]
fn an_epoch_that_does_not_divide_among_the_ranks_is_padded_and_resumes_with_other_ranks() {
    // 9 samples an epoch on 2 ranks: padded to 10 (5 steps of one sample each per rank).
    let script = monitored(&[0.5; 6], None);
    let dir = tempfile::tempdir().unwrap();
    let cut = Script { fail_validation: Some(4), ..script.clone() };
    let ranks = train_ranks(dir.path(), "m", false, &cut, (1, 3), 2);
    assert!(ranks[0].0.as_ref().unwrap_err().to_string() == "killed", "rank 0's validation failed");
    assert!(ranks[1].0.as_ref().unwrap_err().to_string().contains("another rank's abort"));
    let run = dir.path().join("ck/m");
    assert_eq!(state(&run.join(LATEST))["epoch"], 3);
    assert_eq!(state(&run.join(LATEST))["global_step"], 15);
    // Resumed by three ranks: a different global batch, the same run folder.
    let ranks = train_ranks(dir.path(), "m", true, &script, (1, 3), 3);
    for (report, _) in &ranks {
        assert_eq!(report.as_ref().unwrap().epoch, 6);
    }
    assert_eq!(state(&run.join(LATEST))["global_step"], 15 + 3 * 3);
    assert_eq!(metrics(&run).len(), 6);
}
