//! Kill anywhere, fill the disk: `convert`, `segment`, `crop` and `export` are killed with
//! SIGKILL at several seeded random moments of their run; afterwards no final output name
//! holds a partial file (every file there equals the uninterrupted run's), and a rerun ends
//! with exactly the uninterrupted run's files. (`train` killed mid-run and continued with
//! `--continue-train` is `train::killed_run_resumes_with_the_same_schedule_and_weights`; the
//! pipeline killed in registration and segmentation is in `pipeline`.) A write that runs
//! out of space on a small tmpfs fails with one error naming the file, leaves no temporary
//! file and leaves earlier outputs intact.

use crate::common::{self, cta2mbf, repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("cta2mbf runs");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Every file under `dir` by path relative to it, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if !dir.exists() {
        return Vec::new();
    }
    common::walk(dir).into_iter().map(|p| (p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap())).collect()
}

fn is_temporary(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

/// Seeded moments in (5 %, 95 %) of `span`.
fn moments(span: Duration, n: usize, seed: u64) -> Vec<Duration> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            span.mul_f64(0.05 + 0.9 * (state % 10_000) as f64 / 10_000.0)
        })
        .collect()
}

/// Run `make()` once uninterrupted into a clean `out` (after `reset`), then kill it at
/// seeded moments, checking `out` after each kill, then rerun it to the end.
fn kill_anywhere(what: &str, out: &Path, reset: &dyn Fn(), make: &dyn Fn() -> Command) {
    reset();
    let start = Instant::now();
    run_ok(&mut make());
    let span = start.elapsed();
    let reference = files(out);
    assert!(!reference.is_empty(), "{what} wrote nothing into {}", out.display());
    reset();
    for (k, at) in moments(span, 4, what.len() as u64).into_iter().enumerate() {
        let mut child = make().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(at);
        let _ = child.kill();
        child.wait().unwrap();
        for (rel, bytes) in files(out) {
            if is_temporary(&rel) {
                continue;
            }
            let complete = reference.iter().find(|(r, _)| *r == rel).map(|(_, b)| b);
            assert!(complete == Some(&bytes), "{what}, killed after {at:?} (kill {k}): {} is partial or unexpected", rel.display());
        }
    }
    run_ok(&mut make());
    let after: Vec<_> = files(out).into_iter().filter(|(rel, _)| !is_temporary(rel)).collect();
    let names = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&reference), "{what}: the rerun's files differ from an uninterrupted run's");
    for ((rel, a), (_, b)) in after.iter().zip(&reference) {
        assert!(a == b, "{what}: {} differs from the uninterrupted run's", rel.display());
    }
}

fn clear(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn convert_segment_crop_and_export_killed_anywhere_leave_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("P");
    let out = cta2mbf().args(["phantom", "--cases", "2", "--size", "96,96,64", "--dicom", "--out"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run_ok(cta2mbf().args(["sort", "--in"]).arg(p.join("raw")).arg("--out").arg(p.join("0.ori_3")));
    run_ok(cta2mbf().args(["extract", "--in"]).arg(p.join("0.ori_3")).arg("--out").arg(p.join("3.sorted_dcm")).arg("--annotation").arg(p.join("annotation/annotation.csv")));

    let nii = dir.path().join("nii");
    kill_anywhere("convert", &nii, &|| clear(&nii), &|| {
        let mut c = cta2mbf();
        c.args(["convert", "--in"]).arg(p.join("3.sorted_dcm")).arg("--out").arg(&nii);
        c
    });

    let mask = dir.path().join("mask");
    kill_anywhere("segment", &mask, &|| clear(&mask), &|| {
        let mut c = cta2mbf();
        c.args(["segment", "--checkpoint"]).arg(repo().join("models/chamber_seg_phantom")).arg("--in").arg(p.join("3.sorted_nii")).arg("--out").arg(&mask);
        c
    });

    // crop writes the cropped_* files into 5.mbf_myocardium beside its inputs.
    let myo = p.join("5.mbf_myocardium");
    let inputs: Vec<(PathBuf, Vec<u8>)> = files(&myo).into_iter().filter(|(r, _)| !r.to_string_lossy().contains("cropped_")).collect();
    let reset_crop = || {
        clear(&myo);
        for (rel, bytes) in &inputs {
            std::fs::create_dir_all(myo.join(rel).parent().unwrap()).unwrap();
            std::fs::write(myo.join(rel), bytes).unwrap();
        }
    };
    kill_anywhere("crop", &myo, &reset_crop, &|| {
        let mut c = cta2mbf();
        c.args(["crop", "--root"]).arg(&p);
        c
    });

    let exported = dir.path().join("exported");
    kill_anywhere("export", &exported, &|| clear(&exported), &|| {
        let mut c = cta2mbf();
        c.args(["export", "--checkpoint"]).arg(repo().join("fuzz/seeds/checkpoint/tiny.safetensors")).arg("--format").arg("burn").arg("--out").arg(exported.join("net_G.bpk"));
        c
    });
}

/// How to run a shell script that mounts a small tmpfs: in a private mount namespace
/// (`unshare -Urm`: root or unprivileged user namespaces), else directly as root (the script
/// then unmounts it); `None` when neither can mount.
fn tmpfs_shell() -> Option<(Vec<&'static str>, bool)> {
    let probe = tempfile::tempdir().unwrap();
    let try_mount = |prefix: &[&str], unmount: bool| {
        let dir = probe.path().display().to_string();
        let script = format!("mount -t tmpfs -o size=64k tmpfs '{dir}'{}", if unmount { format!(" && umount '{dir}'") } else { String::new() });
        Command::new(prefix[0]).args(&prefix[1..]).arg(script).status().is_ok_and(|s| s.success())
    };
    if try_mount(&["unshare", "-Urm", "sh", "-c"], false) {
        Some((vec!["unshare", "-Urm", "sh", "-c"], false))
    } else if try_mount(&["sh", "-c"], true) {
        Some((vec!["sh", "-c"], true))
    } else {
        None
    }
}

#[test]
fn a_full_disk_names_the_file_removes_the_temporary_and_keeps_earlier_outputs() {
    let (shell, unmount) = tmpfs_shell().expect("this test mounts a small tmpfs: it needs root or `unshare -Urm` (util-linux, unprivileged user namespaces)");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("P");
    let out = cta2mbf().args(["phantom", "--cases", "1", "--size", "96,96,64", "--out"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = std::fs::read_dir(p.join("3.sorted_nii")).unwrap().next().unwrap().unwrap().file_name();
    let cta = p.join("3.sorted_nii").join(&pid).join("CTA.nii.gz");
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    // Inside a private mount namespace: a 256 KiB tmpfs on `disk`; a first mask (.nii.gz, a few kB)
    // fits, then the same mask as .nii (590 kB) cannot. The listing and checksum come back on stdout.
    let bin = env!("CARGO_BIN_EXE_cta2mbf");
    let model = repo().join("models/chamber_seg_phantom");
    let script = format!(
        "set -u; mount -t tmpfs -o size=256k tmpfs '{d}' || exit 90; \
         '{bin}' segment --checkpoint '{m}' --input '{c}' --output '{d}/mask.nii.gz' >/dev/null 2>&1 || exit 91; \
         sum1=$(md5sum < '{d}/mask.nii.gz'); \
         '{bin}' segment --checkpoint '{m}' --input '{c}' --output '{d}/mask2.nii' >/dev/null 2>'{d}/../err.txt'; echo \"exit=$?\"; \
         echo \"files=$(ls -A '{d}' | tr '\\n' ' ')\"; sum2=$(md5sum < '{d}/mask.nii.gz'); [ \"$sum1\" = \"$sum2\" ] && echo same=yes || echo same=no",
        d = disk.display(),
        m = model.display(),
        c = cta.display(),
    );
    let script = if unmount { format!("{script}; umount '{}'", disk.display()) } else { script };
    let out = Command::new(shell[0]).args(&shell[1..]).arg(&script).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "script failed ({:?}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    let err = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    println!("{text}{err}");
    assert!(text.contains("exit=1"), "the write into a full disk must fail with exit 1: {text}");
    assert!(text.contains("same=yes"), "the earlier output changed: {text}");
    let listed = text.lines().find_map(|l| l.strip_prefix("files=")).unwrap();
    assert_eq!(listed.trim(), "mask.nii.gz", "a temporary or partial file was left: {listed}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert!(err.contains(&format!("{}/mask2.nii: No space left on device", disk.display())), "the error must name the file and the problem: {err}");
}
