//! `cta2mbf phantom`: write a synthetic cohort.

use super::{parse_mm, parse_size};
use cta2mbf::phantom::{PhantomOptions, write_cohort, write_cohort_with_dicom};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `cta2mbf phantom`.
#[derive(Debug, clap::Args)]
pub struct PhantomArgs {
    /// Cohort root to create (the docs/design.md §2 folders are written inside).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of patients.
    #[arg(long, default_value_t = 4)]
    pub cases: usize,
    /// CTA grid size X,Y,Z.
    #[arg(long, value_parser = parse_size, default_value = "64,64,48")]
    pub size: [usize; 3],
    /// Field of view X,Y,Z of the CTA grid in mm, centred near the heart (at least 80 each).
    #[arg(long, value_parser = parse_mm, default_value = "200,200,150")]
    pub fov: [f64; 3],
    /// Random seed; the same seed writes the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write each patient as a shuffled DICOM dump in `raw/<pid>/` (CTA, MIP, AVG, BF,
    /// a localizer, a thick-slice series, a DICOMDIR, a text file) and `annotation/annotation.csv`.
    #[arg(long)]
    pub dicom: bool,
}

/// Run `cta2mbf phantom`.
pub fn run(args: PhantomArgs) -> cta2mbf::Result<()> {
    let start = Instant::now();
    let options = PhantomOptions { cases: args.cases, size: args.size, fov_mm: args.fov, seed: args.seed };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let progress = |_, pid: &str| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        eprintln!("phantom: patient {pid} written ({n}/{})", args.cases);
    };
    let ids = if args.dicom { write_cohort_with_dicom(&args.out, &options, progress)? } else { write_cohort(&args.out, &options, progress)? };
    println!(
        "phantom: {} patients ({}) of {}x{}x{} in {:.2} s under {}",
        ids.len(),
        ids.join(", "),
        args.size[0],
        args.size[1],
        args.size[2],
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
