//! Times reading and writing one NIfTI volume in-process, as BENCHMARKS.md quotes them:
//! `cargo run --release --example nifti_timing -- VOLUME.nii.gz [REPEATS]`.
//! Writes `.nii` and `.nii.gz` copies (int16 when lossless, float32 otherwise) to a
//! temporary folder and prints the median time of each operation.

use cta2mbf::io::nifti::lossless_dtype;
use cta2mbf::io::{read_nifti, write_nifti};
use std::time::Instant;

/// Median of `repeats` timings of `f`, in seconds.
fn median_seconds(repeats: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(input) = args.next() else {
        eprintln!("usage: nifti_timing VOLUME.nii[.gz] [REPEATS]");
        std::process::exit(2);
    };
    let repeats: usize = args.next().map_or(3, |r| r.parse().expect("REPEATS is a number"));
    let volume = read_nifti(&input).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let dtype = lossless_dtype(&volume);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let [nx, ny, nz] = volume.shape();
    println!("{input}: {nx}x{ny}x{nz}, written as {}, median of {repeats}", dtype.name());
    for ext in ["nii", "nii.gz"] {
        let path = dir.path().join(format!("v.{ext}"));
        let write = median_seconds(repeats, || write_nifti(&path, &volume, dtype).expect("write"));
        let read = median_seconds(repeats, || drop(read_nifti(&path).expect("read")));
        println!("{ext:7} write {write:.3} s  read {read:.3} s");
    }
}
