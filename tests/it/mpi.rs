//! Training across processes on MPI (`mpirun -np 2`, feature `mpi`): the same steps as one
//! process with the whole batch, rank 0 alone writing, a killed rank ending the job within a
//! bounded time with the last complete checkpoint kept, and resuming on another number of ranks;
//! the pipeline's patients shared by two ranks, writing what one process writes, and a job
//! that lost a rank, run again, ending with the same files.

use crate::common;

use common::{all_weights, cta2mbf, mpirun, phantom, rank_pid, relative_l2, run_ok, tiny_gan_weights};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn two_ranks_with_batch_1_take_the_steps_of_one_process_with_batch_2() {
    // 2 cases × 3 samples: three steps of two samples. Eval norm mode: a sample's gradient does
    // not depend on the other samples of its step, so only the order of the sums differs.
    let dir = tempfile::tempdir().unwrap();
    phantom(dir.path(), 2, "64,64,48", 6);
    let three_steps = [("samples_per_volume", 3.into())];
    let mut two = mpirun(2);
    two.env("RAYON_NUM_THREADS", "1");
    let ranks = tiny_gan_weights(dir.path(), "ranks", two, 1, &["--device", "cpu"], &three_steps);
    let single = tiny_gan_weights(dir.path(), "single", cta2mbf(), 2, &["--device", "cpu"], &three_steps);
    assert_eq!(ranks.keys().collect::<Vec<_>>(), single.keys().collect::<Vec<_>>());
    let rel = relative_l2(&all_weights(&ranks), &all_weights(&single));
    eprintln!("2 ranks × batch 1 vs 1 process × batch 2, 3 steps: relative L2 {rel:.3e}");
    assert!(rel <= 1e-5, "relative L2 difference {rel}");
    // Two devices inside each rank: a step of 2 ranks × 2 devices × 1 sample is one process's
    // step of 4 (the 6 samples make steps of 4 and 2).
    let mut two = mpirun(2);
    two.env("RAYON_NUM_THREADS", "1");
    let devices = tiny_gan_weights(dir.path(), "devices", two, 1, &["--devices", "cpu,ndarray"], &three_steps);
    let four = tiny_gan_weights(dir.path(), "four", cta2mbf(), 4, &["--device", "cpu"], &three_steps);
    let rel = relative_l2(&all_weights(&devices), &all_weights(&four));
    eprintln!("2 ranks × 2 devices × batch 1 vs 1 process × batch 4, 2 steps: relative L2 {rel:.3e}");
    assert!(rel <= 1e-5, "relative L2 difference {rel}");
    // Rank 0 alone wrote the run: one line per epoch, three steps.
    let run = dir.path().join("ckpt/ranks");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 1);
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("latest/state.json")).unwrap()).unwrap();
    assert_eq!(state["global_step"], 3);
}

fn latest_epoch(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("latest/state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["epoch"].as_u64()
}

#[test]
fn a_killed_rank_ends_the_job_within_60_s_and_the_run_resumes_on_one_process() {
    let dir = tempfile::tempdir().unwrap();
    phantom(dir.path(), 2, "64,64,48", 6);
    let config = common::tiny_generator_config(dir.path(), "killed", &[("crop_size", serde_json::json!([16, 16, 16])), ("val_cases", serde_json::json!([]))]);
    let ckpt = dir.path().join("ckpt");
    let run = ckpt.join("killed");
    let train = |mut c: std::process::Command, epochs: usize| {
        c.args(["train", "--quiet", "--device", "cpu", "--epochs", &epochs.to_string(), "--config"]).arg(&config).arg("--data-root").arg(dir.path().join("5.mbf_myocardium")).arg("--checkpoints-dir").arg(&ckpt);
        c
    };
    let mut job = train(mpirun(2), 1000).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while latest_epoch(&run).is_none_or(|e| e < 2) {
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        assert!(start.elapsed() < Duration::from_secs(600), "no second epoch within 10 min");
        std::thread::sleep(Duration::from_millis(50));
    }
    let victim = rank_pid(1, "train", ckpt.to_str().unwrap()).expect("rank 1 is running");
    // SAFETY: sending SIGKILL to a process this test started (through mpirun).
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "the job still runs 60 s after rank 1 was killed");
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = killed_at.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut err).unwrap();
    eprintln!("job ended {:.1} s after the kill, {status}:\n{err}", waited.as_secs_f64());
    assert!(!status.success());
    assert!(err.contains("signal 9") || err.contains("Killed"), "the failure is named: {err}");
    // The last complete checkpoint stays, and the run resumes on one process for one epoch.
    let epoch = latest_epoch(&run).unwrap();
    let out = train(cta2mbf(), epoch as usize + 1).arg("--continue-train").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(latest_epoch(&run), Some(epoch + 1));
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count() as u64, epoch + 1);
}

#[test]
fn a_command_that_does_not_run_across_processes_is_refused_under_mpirun() {
    let dir = tempfile::tempdir().unwrap();
    let out = mpirun(2).args(["phantom", "--cases", "1", "--size", "32,32,24", "--out"]).arg(dir.path().join("p")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("phantom does not run across processes") && err.contains("train, train-seg and pipeline"), "{err}");
    assert!(!dir.path().join("p").exists(), "nothing was written");
}

/// A 4-patient phantom DICOM dump under `dir` and the cohort one process makes of it
/// (`dir/one`); returns the pipeline's command over the dump into `root` for `command`.
fn pipeline_against_one_process(dir: &Path) -> impl Fn(std::process::Command, &Path) -> std::process::Command {
    let p = dir.join("P");
    run_ok(cta2mbf().args(["phantom", "--dicom", "--cases", "4", "--size", "64,64,48", "--seed", "12", "--out"]).arg(&p));
    let run = move |command, root: &Path| {
        let mut c = common::pipeline(command, &p.join("raw"), root);
        c.arg("--annotation").arg(p.join("annotation/annotation.csv"));
        c
    };
    let start = Instant::now();
    let text = run_ok(&mut run(cta2mbf(), &dir.join("one")));
    eprintln!("pipeline, 4 patients, one process: {:.1} s", start.elapsed().as_secs_f64());
    assert!(text.contains("0 patients failed"), "{text}");
    run
}

/// Each patient's stage statuses in a cohort's `pipeline_report.json`.
fn statuses(root: &Path) -> Vec<(String, Vec<String>)> {
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("pipeline_report.json")).unwrap()).unwrap();
    let patients = report["patients"].as_array().unwrap().iter();
    patients.map(|p| (p["pid"].as_str().unwrap().into(), p["stages"].as_object().unwrap().values().map(|s| s["status"].as_str().unwrap().into()).collect())).collect()
}

#[test]
fn two_ranks_share_the_pipeline_patients_and_write_what_one_process_does() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_against_one_process(dir.path());
    let two = dir.path().join("two");
    let start = Instant::now();
    let text = run_ok(&mut pipeline(mpirun(2), &two));
    eprintln!("pipeline, 4 patients, mpirun -np 2: {:.1} s", start.elapsed().as_secs_f64());
    common::same_files(&dir.path().join("one"), &two);
    assert_eq!(statuses(&two), statuses(&dir.path().join("one")));
    // Both ranks worked; rank 0 alone printed the report.
    assert!(text.contains("[rank 0] register") && text.contains("[rank 1] register"), "{text}");
    assert_eq!(text.matches("0 patients failed").count(), 1, "{text}");
}

#[test]
fn a_pipeline_rank_killed_ends_the_job_and_a_rerun_ends_with_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_against_one_process(dir.path());
    let root = dir.path().join("killed");
    let mut job = pipeline(mpirun(2), &root).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    // Killed in registration (the longest stage), once rank 1 is seen there.
    let victim = loop {
        assert!(job.try_wait().unwrap().is_none(), "the job ended before rank 1 registered");
        assert!(start.elapsed() < Duration::from_secs(300), "rank 1 never came to registration");
        if root.join("4.registration_batch").is_dir()
            && let Some(pid) = rank_pid(1, "pipeline", root.to_str().unwrap())
        {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: sending SIGKILL to a process this test started (through mpirun).
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    let status = job.wait().unwrap();
    eprintln!("job ended {:.1} s after rank 1 was killed: {status}", killed_at.elapsed().as_secs_f64());
    assert!(!status.success());
    assert!(!root.join("pipeline_report.json").exists(), "no report from a job that lost a rank");
    let text = run_ok(&mut pipeline(mpirun(2), &root));
    assert!(text.contains("0 patients failed"), "{text}");
    common::same_files(&dir.path().join("one"), &root);
}
