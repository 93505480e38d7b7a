//! `cta2mbf pipeline`: from a raw DICOM dump to training pairs in one resumable command.

use super::args::QcArgs;
use super::print_report;
use cta2mbf::device::DeviceChoice;
use cta2mbf::distributed::Group;
use cta2mbf::pipeline::{Event, Options, Outcome, Stage, run_pipeline};
use cta2mbf::preprocess::label_map::LabelMap;
use cta2mbf::preprocess::mask_import::MaskSource;
use cta2mbf::preprocess::stage::with_jobs;
use std::path::PathBuf;

/// Arguments of `cta2mbf pipeline`.
#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// The raw dump: one folder of DICOM files (any depth) per patient.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The cohort root to fill (`0.ori_3` … `5.mbf_myocardium`, `pipeline_report.{json,md}`).
    #[arg(long)]
    pub root: PathBuf,
    /// Annotation table (CSV or .xlsx) naming each patient's CTA, MIP, AVG and BF series.
    #[arg(long)]
    pub annotation: Option<PathBuf>,
    /// Chamber-segmentation model (checkpoint, run folder, shipped model folder, or the
    /// reference's network as a `.pth` or exported file, as `segment --checkpoint`); default
    /// the shipped `models/chamber_seg_phantom`, trained on the phantom only (of the working
    /// directory, else of the source tree this binary was built from).
    #[arg(long, conflicts_with = "masks")]
    pub seg_model: Option<PathBuf>,
    /// Import each patient's chamber masks instead of running the network:
    /// `totalsegmentator:DIR` (TotalSegmentator `-ta heartchambers_highres` outputs, `DIR/<pid>/`
    /// or `DIR/<pid>.nii.gz`) or `labels:DIR` with `--label-map`.
    #[arg(long, value_name = "SOURCE")]
    pub masks: Option<String>,
    /// Label map (JSON) for `--masks labels:DIR`, or replacing TotalSegmentator's `--ml` labels.
    #[arg(long, value_name = "JSON", requires = "masks")]
    pub label_map: Option<PathBuf>,
    /// First stage to run.
    #[arg(long, value_enum, default_value = "sort")]
    pub from: Stage,
    /// Last stage to run.
    #[arg(long, value_enum, default_value = "crop")]
    pub to: Stage,
    /// Patients processed at once (default: one per core); under MPI, where each rank runs
    /// one patient at a time, the rank's threads.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Rerun every stage, even those that are up to date.
    #[arg(long)]
    pub force: bool,
    /// Refuse DICOM series that do not form one volume (as `convert --strict`).
    #[arg(long)]
    pub strict: bool,
    /// Registration settings as JSON (the fields `register --config` takes).
    #[arg(long)]
    pub register_config: Option<PathBuf>,
    /// Backend of the segmentation network: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Quality control of the chamber masks (checked after `connected`).
    #[command(flatten)]
    pub qc: QcArgs,
}

/// The shipped segmentation model: `models/chamber_seg_phantom` here, else in the source tree.
fn shipped_seg_model() -> PathBuf {
    let here = PathBuf::from("models/chamber_seg_phantom");
    if here.exists() { here } else { PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/chamber_seg_phantom") }
}

/// The pipeline's options from the command line (an unreadable file named there is an error).
fn options(args: &PipelineArgs) -> cta2mbf::Result<Options> {
    let register = match &args.register_config {
        Some(path) => cta2mbf::register::Settings::read(path)?,
        None => cta2mbf::register::Settings::default(),
    };
    Ok(Options {
        raw: args.input.clone(),
        root: args.root.clone(),
        annotation: args.annotation.clone(),
        seg_model: args.seg_model.clone().unwrap_or_else(shipped_seg_model),
        masks: match &args.masks {
            Some(spec) => Some(MaskSource::parse(spec, args.label_map.as_deref().map(LabelMap::read).transpose()?)?),
            None => None,
        },
        from: args.from,
        to: args.to,
        force: args.force,
        register,
        strict: args.strict,
        qc: args.qc.policy()?,
    })
}

/// A progress line for `e`, if it has one.
fn event_line(e: Event) -> Option<String> {
    Some(match e {
        Event::Stage(stage, n) => format!("== {} ({n} patients)", stage.name()),
        Event::Patient(stage, pid, outcome) => match outcome {
            Outcome::Done { seconds, note } => format!("{} {pid}: done in {seconds:.1} s{}", stage.name(), note.map(|n| format!(" ({n})")).unwrap_or_default()),
            Outcome::Skipped => format!("{} {pid}: up to date, skipped", stage.name()),
            Outcome::Failed(why) => format!("{} {pid}: FAILED: {why}", stage.name()),
            Outcome::QcFailed(why) => format!("{} {pid}: QC FAILED: {why}", stage.name()),
            Outcome::NotRun => return None,
        },
    })
}

/// Run `cta2mbf pipeline` in `group` (the ranks of an MPI job share the patients): `Err` is
/// this process's failure alone, `Ok(Err)` one every rank reached together (a setup error,
/// failed patients), each rank then ending with it. Rank 0 prints the report.
pub fn run(args: PipelineArgs, group: &Group) -> cta2mbf::Result<cta2mbf::Result<()>> {
    let setup = group.agree(options(&args).and_then(|o| Ok((args.device.device()?, o))));
    let (device, options) = match setup {
        Ok(setup) => setup,
        Err(e) => return Ok(Err(e)),
    };
    if args.seg_model.is_none() && options.masks.is_none() && (options.from..=options.to).contains(&Stage::Segment) && group.is_root() {
        eprintln!(
            "note: segmenting with the shipped {}, trained on the phantom only; for real CT pass --seg-model (the reference's .pth, your train-seg run) or --masks totalsegmentator:DIR (README, 'Segmentation on your own data')",
            options.seg_model.display()
        );
    }
    let rank = group.is_distributed().then(|| format!("[rank {}] ", group.rank())).unwrap_or_default();
    let events = |e: Event| {
        if let Some(line) = event_line(e) {
            // One write per line, so that the ranks' lines, merged by the launcher, stay whole.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{rank}{line}\n").as_bytes());
        }
    };
    let report = match with_jobs(args.jobs, || run_pipeline(&options, &device, group, &events))? {
        Ok(report) => report,
        Err(e) => return Ok(Err(e)),
    };
    if group.is_root() {
        print_report(&report);
    }
    // The launcher ends the job when a rank ends with failed patients: none ends before rank 0 printed.
    group.all_gather(&[]);
    Ok(super::cases_failed("pipeline", report.failed(), report.patients.len()))
}
