//! `cta2mbf register`: MIP → CTA registration applied to AVG and BF, for a cohort
//! (`--root`) or one patient (`--fixed --moving [--apply] --out`), or re-applying a saved
//! transform (`--transform`).

use super::{parse_positive, print_report};
use cta2mbf::phantom::check::{RegistrationCheck, check_registration};
use cta2mbf::register::files::{self, Job, Summary};
use cta2mbf::register::{Event, MetricKind, Settings, TransformKind};
use cta2mbf::preprocess::stage::with_jobs;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Arguments of `cta2mbf register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Cohort root: registers every `3.sorted_nii/<pid>/MIP.nii.gz` to its `CTA.nii.gz`, moves
    /// AVG and BF along, and writes `4.registration_batch/<pid>/{cta,cta_mip_mip,cta_mip_avg,cta_mip_bf}.nii.gz`
    /// with `transform.tfm` and `registration.json`.
    #[arg(long, conflicts_with_all = ["fixed", "moving", "apply", "out", "transform"])]
    pub root: Option<PathBuf>,
    /// One patient: the fixed image (CTA), whose grid the outputs take.
    #[arg(long, requires = "out")]
    pub fixed: Option<PathBuf>,
    /// One patient: the moving image (MIP) the transform is found with.
    #[arg(long, requires = "fixed")]
    pub moving: Option<PathBuf>,
    /// Images on the moving image's grid to move with the same transform (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "fixed")]
    pub apply: Vec<PathBuf>,
    /// Output folder of one patient: the moved images under their input file names, `transform.tfm`, `registration.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-apply this saved transform (`.tfm`) to `--moving`/`--apply` instead of optimizing.
    #[arg(long, requires = "fixed")]
    pub transform: Option<PathBuf>,
    /// Settings as JSON (the fields of `registration.json`'s "settings"); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Similarity measure.
    #[arg(long, value_enum)]
    pub metric: Option<MetricKind>,
    /// Transform of the linear levels before the B-spline ones (default affine).
    #[arg(long, value_enum)]
    pub linear: Option<TransformKind>,
    /// Control-point spacing of the finest B-spline level, mm (default 16).
    #[arg(long, value_parser = parse_positive)]
    pub grid_spacing: Option<f64>,
    /// Weight of the bending-energy penalty (default 1000; 0 switches it off).
    #[arg(long)]
    pub bending_weight: Option<f64>,
    /// Fixed-image samples per level (default 30000).
    #[arg(long)]
    pub samples: Option<usize>,
    /// L-BFGS iterations per level, at most (default 100).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Affine registration only (no B-spline levels).
    #[arg(long)]
    pub affine_only: bool,
    /// Patients registered at once (default: one per core; each also uses every core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl RegisterArgs {
    fn settings(&self) -> cta2mbf::Result<Settings> {
        let mut s = match &self.config {
            Some(path) => Settings::read(path)?,
            None => Settings::default(),
        };
        if let Some(m) = self.metric {
            s.metric = m;
        }
        if let Some(t) = self.linear {
            s.linear = t;
        }
        if let Some(g) = self.grid_spacing {
            s.grid_spacing_mm = g;
        }
        if let Some(w) = self.bending_weight {
            s.bending_weight = w;
        }
        if let Some(n) = self.samples {
            s.samples = n;
        }
        if let Some(n) = self.iterations {
            s.iterations = n;
        }
        if self.affine_only {
            s.bspline_levels_mm.clear();
        }
        s.validate()?;
        Ok(s)
    }
}

/// One progress bar per level and patient on a terminal; nothing otherwise.
struct Bars {
    multi: Option<MultiProgress>,
    current: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        let multi = std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars { multi, current: Mutex::new(HashMap::new()) }
    }

    fn event(&self, who: &str, event: Event) {
        let Some(multi) = &self.multi else { return };
        let mut current = self.current.lock().expect("progress lock");
        match event {
            Event::Level { label, iterations } => {
                let bar = multi.add(ProgressBar::new(iterations as u64));
                bar.set_style(ProgressStyle::with_template("{prefix} {msg:32} [{bar:30}] {pos}/{len}").expect("valid template").progress_chars("=> "));
                bar.set_prefix(who.to_string());
                bar.set_message(label);
                if let Some(old) = current.insert(who.to_string(), bar) {
                    old.finish_and_clear();
                }
            }
            Event::Iteration { iteration, cost } => {
                if let Some(bar) = current.get(who) {
                    bar.set_position(iteration as u64);
                    let _ = cost;
                }
            }
            Event::LevelDone(report) => {
                if let Some(bar) = current.remove(who) {
                    bar.finish_and_clear();
                    let _ = multi.println(format!(
                        "{who} {} {} mm: cost {:.4} → {:.4} in {} iterations, {:.1} s",
                        report.stage, report.spacing_mm, report.cost_start, report.cost_end, report.iterations, report.seconds
                    ));
                }
            }
        }
    }
}

/// Run `cta2mbf register`.
pub fn run(args: RegisterArgs) -> cta2mbf::Result<()> {
    let settings = args.settings()?;
    let bars = Bars::new();
    if let Some(root) = &args.root {
        // On a phantom cohort, each patient is also scored against the known motion.
        let checks = Mutex::new(Vec::new());
        let cohort = cta2mbf::cohort::Cohort::new(root);
        let done = |pid: &str, s: &Summary| {
            let mut line = format!("patient {pid}: {}", s.line());
            let truth = cohort.phantom_truth(pid);
            if let (true, Some(r)) = (truth.is_file(), &s.registration) {
                match check_registration(&truth, |p| r.transform.apply(p)) {
                    Ok(c) => {
                        line += &format!(
                            "; against the phantom's truth: TRE mean {:.2} mm, p95 {:.2} mm, max {:.2} mm; myocardium Dice {:.3} (unaligned {:.3})",
                            c.tre_mean_mm, c.tre_p95_mm, c.tre_max_mm, c.dice_registered, c.dice_unaligned
                        );
                        checks.lock().expect("checks lock").push(c);
                    }
                    Err(e) => line += &format!("; phantom check failed: {e}"),
                }
            }
            println!("{line}");
        };
        let report = with_jobs(args.jobs, || files::register_cohort(root, &settings, &|pid, e| bars.event(pid, e), &done))??;
        print_report(&report);
        let checks = checks.into_inner().expect("checks lock");
        if !checks.is_empty() {
            let n = checks.len() as f64;
            let mean = |f: fn(&RegistrationCheck) -> f64| checks.iter().map(f).sum::<f64>() / n;
            println!(
                "phantom truth over {} patients: TRE mean {:.2} mm, p95 {:.2} mm (means of the per-patient values); myocardium Dice {:.3} (unaligned {:.3})",
                checks.len(),
                mean(|c| c.tre_mean_mm),
                mean(|c| c.tre_p95_mm),
                mean(|c| c.dice_registered),
                mean(|c| c.dice_unaligned)
            );
        }
        return report.check();
    }
    let (Some(fixed), Some(out)) = (&args.fixed, &args.out) else {
        return Err(cta2mbf::Error::invalid("register needs --root ROOT, or --fixed CTA --moving MIP --out DIR (see --help)"));
    };
    let mut images: Vec<PathBuf> = args.moving.iter().cloned().collect();
    images.extend(args.apply.iter().cloned());
    if args.transform.is_none() && args.moving.is_none() {
        return Err(cta2mbf::Error::invalid("register --fixed needs --moving (or --transform T with --apply)"));
    }
    let Some((first, rest)) = images.split_first() else {
        return Err(cta2mbf::Error::invalid("register --transform needs images to move (--moving or --apply)"));
    };
    let output = |p: &Path| out.join(p.file_name().unwrap_or_default());
    let job = Job {
        fixed: fixed.clone(),
        moving: first.clone(),
        apply: rest.to_vec(),
        outputs: images.iter().map(|p| output(p)).collect(),
        fixed_copy: None,
        transform: args.transform.clone(),
        transform_out: out.join("transform.tfm"),
        report_out: out.join("registration.json"),
    };
    for (input, output) in images.iter().zip(&job.outputs) {
        if input.canonicalize().ok() == output.canonicalize().ok() && output.exists() {
            return Err(cta2mbf::Error::format(output, "the output would overwrite its input; choose another --out"));
        }
    }
    let summary = with_jobs(args.jobs, || files::run_job(&job, &settings, &|e| bars.event("", e)))??;
    println!("{}", summary.line());
    for p in &summary.written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
