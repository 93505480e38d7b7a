//! Corpus replay: every input in `fuzz/seeds/`, `fuzz/corpus/` and `fuzz/regressions/` goes
//! through the fuzz targets' entry points (`cta2mbf::fuzz::run`) on stable Rust, so that a
//! crash the fuzzers once found stays fixed. A reader may refuse an input; it must not panic.
//! The seeds written from valid files (fuzz/make_seeds.sh) must also still be accepted, which
//! shows the inputs reach the readers.

use crate::common::repo;
use cta2mbf::fuzz::{Target, run};
use std::path::PathBuf;

fn inputs(kind: &str, target: Target) -> Vec<PathBuf> {
    let dir = repo().join("fuzz").join(kind).join(target.name());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Seeds that come from valid files and must be accepted.
fn must_accept(target: Target, name: &str) -> bool {
    match target {
        Target::Nifti | Target::Config | Target::Annotation | Target::DicomSeries => true,
        Target::Checkpoint => name.starts_with("tiny") || name.starts_with("seg_"),
        Target::DicomFile => name.starts_with("phantom_"),
    }
}

#[test]
fn every_corpus_and_regression_input_is_read_without_a_panic() {
    let mut counts = Vec::new();
    for target in Target::ALL {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{} is empty (run fuzz/make_seeds.sh)", target.name());
        for path in &seeds {
            let name = path.file_name().unwrap().to_string_lossy();
            let result = run(target, &std::fs::read(path).unwrap());
            if must_accept(target, &name) {
                assert!(result.is_ok(), "{}: {:?}", path.display(), result.err());
            }
        }
        let mut n = seeds.len();
        for kind in ["corpus", "regressions"] {
            for path in inputs(kind, target) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(target, &data));
                assert!(outcome.is_ok(), "{} panicked", path.display());
                n += 1;
            }
        }
        counts.push(format!("{} {n}", target.name()));
    }
    println!("replayed: {}", counts.join(", "));
}

/// The refusal each bound regression must give: its file in `fuzz/regressions/<target>/`, a
/// fragment of the error of the bound added for it, and the bug (fuzz/README.md, git log).
/// With memory overcommit a regressed bound could let such an input through without a panic,
/// so the replay alone would not notice; this table does.
const REFUSALS: [(&str, &str, &str); 10] = [
    ("oom-6f9bdca5acebc473c43a63317889e7d3aae5c59b", "element (0008,1115) claims 3758161918 bytes", "a sequence without its VR (pydicom's UN_sequence.dcm): element lengths checked before dicom-rs allocates"),
    ("oom-394870fc68a4b93ca33c3c1093410e4f166bd42f", "element (B105,AE05) claims 2852405508 bytes", "the same, in a series"),
    ("oom-634b6c5131be29601fd962a6175c2f92fb6d9ba0", "element (EEEE,EEEE) claims 4008636142 bytes", "a meta group longer than its group-2 elements"),
    ("oom-97b434b79a200e98734767c90e7a12c8d6292381", "element (FFFE,0D00) claims 3758096384 bytes", "an unknown (FFFE,xxxx) tag read as an element"),
    ("oom-472719fcd4a0b3e66e944e30a060f7744e2bd7fb", "element (7FE0,0010) claims 4294966783 bytes", "a PixelData nested in a sequence"),
    ("oom-1f1e7c7b42c24d9caaf3093ee9be5fafdd80f71b", "element (0000,0000) claims 3758161918 bytes", "an undefined-length OB that is not PixelData, read as a sequence"),
    ("oom-520f08e2774cbc94efeccad0650e273d06a9aed0", "element (FFFE,E000) claims 1073741824 bytes", "a sequence delimiter inside an item: the PixelData after it is nested, its offset table checked"),
    ("slow-unit-11799c3af07d8d9c384f7107acc67dd2fef13822", "corrupt deflated data set", "a corrupt deflate stream that hid a 1.3 GB element"),
    ("metadata-ngf-100000.safetensors", "describes a generator of about 52440092200001 parameters; the file stores 1 values", "a generator described as far larger than the file"),
    ("shape-overflow.safetensors", "overflow computing buffer size from shape", "a tensor shape whose size overflows"),
];

#[test]
fn every_bound_regression_is_refused_by_its_bound() {
    let mut checked = Vec::new();
    for target in Target::ALL {
        for path in inputs("regressions", target) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("crash-") {
                continue; // a panic, fixed: the replay above checks it
            }
            let Some(&(_, expected, bug)) = REFUSALS.iter().find(|(file, ..)| *file == name) else {
                panic!("{} has no entry in REFUSALS: add the refusal message of the bound that fixed it", path.display());
            };
            match run(target, &std::fs::read(&path).unwrap()) {
                Ok(()) => panic!("{} ({bug}) was accepted; its bound should refuse it with \"{expected}\"", path.display()),
                Err(e) => assert!(e.to_string().contains(expected), "{} ({bug}): expected \"{expected}\", got: {e}", path.display()),
            }
            checked.push(name);
        }
    }
    for (file, ..) in REFUSALS {
        assert!(checked.iter().any(|c| c == file), "REFUSALS names {file}, which is not in fuzz/regressions");
    }
}

/// The length check against dicom-rs itself, reading with this binary's allocations watched.
mod agreement {
    use crate::common::repo;
    use cta2mbf::fuzz::SERIES_SEPARATOR;
    use cta2mbf::io::dicom::bounds::check_lengths;
    use cta2mbf::io::dicom::dicm_offset;
    use dicom_dictionary_std::tags;
    use dicom_object::OpenFileOptions;
    use dicom_object::file::ReadPreamble;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::path::Path;

    /// Largest allocation a watched read may make (larger requests fail).
    const CAP: usize = 64 << 20;

    /// The system allocator, which on a watched thread records the largest request and fails
    /// requests over [`CAP`].
    struct Watching;

    thread_local! {
        /// The largest request of the watched read on this thread; `None` when not watched.
        static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Record a request of `size` bytes; whether it may be served.
    fn allowed(size: usize) -> bool {
        LARGEST
            .try_with(|l| match l.get() {
                Some(largest) => {
                    l.set(Some(largest.max(size)));
                    size <= CAP
                }
                None => true,
            })
            .unwrap_or(true)
    }

    unsafe impl GlobalAlloc for Watching {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if allowed(layout.size()) { unsafe { System.alloc(layout) } } else { std::ptr::null_mut() }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if allowed(layout.size()) { unsafe { System.alloc_zeroed(layout) } } else { std::ptr::null_mut() }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if allowed(new_size) { unsafe { System.realloc(ptr, layout, new_size) } } else { std::ptr::null_mut() }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Watching = Watching;

    /// dicom-rs's read of the DICOM file `bytes` (its `DICM` marker at `offset`), as
    /// `parse_dicom` makes it, without the length check: whether it succeeded, and the largest
    /// allocation it requested.
    fn dicom_rs(bytes: &[u8], offset: usize, header_only: bool) -> (bool, usize) {
        LARGEST.with(|l| l.set(Some(0)));
        let mut options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
        if header_only {
            options = options.read_until(tags::PIXEL_DATA);
        }
        let ok = options.from_reader(&bytes[offset..]).is_ok();
        (ok, LARGEST.with(|l| l.replace(None)).unwrap())
    }

    /// Every committed DICOM input (name, bytes).
    fn files() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for kind in ["seeds", "corpus", "regressions"] {
            for target in ["dicom_file", "dicom_series"] {
                let Ok(entries) = std::fs::read_dir(repo().join("fuzz").join(kind).join(target)) else { continue };
                let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
                paths.sort();
                for path in paths {
                    let data = std::fs::read(&path).unwrap();
                    let name = format!("fuzz/{kind}/{target}/{}", path.file_name().unwrap().to_string_lossy());
                    if target == "dicom_file" {
                        out.push((name, data));
                        continue;
                    }
                    let mut rest = &data[..];
                    let mut k = 0;
                    while let Some(i) = rest.windows(SERIES_SEPARATOR.len()).position(|w| w == SERIES_SEPARATOR) {
                        out.push((format!("{name} file {k}"), rest[..i].to_vec()));
                        rest = &rest[i + SERIES_SEPARATOR.len()..];
                        k += 1;
                    }
                    out.push((format!("{name} file {k}"), rest.to_vec()));
                }
            }
        }
        out
    }

    /// The length the check refused, from its message ("claims N bytes").
    fn claimed(message: &str) -> Option<usize> {
        let rest = &message[message.find(" claims ")? + 8..];
        rest[..rest.find(' ')?].parse().ok()
    }

    /// The length check (`io::dicom::bounds::check_lengths`) against dicom-rs itself, on every
    /// committed DICOM input: the dicom_file and dicom_series seeds (phantom files and pydicom's
    /// test files of every transfer syntax), corpus and regressions, a series input split into its
    /// files. For each file with a `DICM` marker and each read the project makes (header only, up to
    /// PixelData, as `sort` reads; whole, as a series is read), dicom-rs reads the file as
    /// `parse_dicom` has it read, without the check, while this thread's allocations are watched:
    ///
    /// - **accepted ⇒ bounded**: if the check accepts the file, no single allocation dicom-rs
    ///   requests exceeds 4 × the data set (the file, or for a deflated data set the most it can
    ///   inflate to; 4: a basic offset table is read as 4-byte values, one per byte) + 1 MiB (its
    ///   buffers). This is what the check exists for.
    /// - **refused ⇒ dicom-rs fails or allocates the refused length**: if the check refuses an
    ///   element that claims N bytes (N up to [`CAP`]), dicom-rs either fails on the file or
    ///   requests an allocation of at least N bytes, so the refusal names an allocation dicom-rs
    ///   really makes (a fragment cut by the end of the file is one dicom-rs would read short,
    ///   having allocated its full length first). A refusal over [`CAP`] is what the check exists to
    ///   prevent and is not run; a corrupt deflate stream is refused by design (what dicom-rs
    ///   inflates from it is not bounded).
    ///
    /// Requests above [`CAP`] fail while watched (dicom-rs reserves most value memory fallibly;
    /// where it does not, the binary aborts), so a disagreement fails this test instead of
    /// allocating gigabytes. Cargo.toml pins dicom-rs exactly; run this after updating it.
    #[test]
    fn the_length_check_and_dicom_rs_agree_on_every_committed_dicom_file() {
        let (mut accepted, mut refused_checked, mut refused_over_cap, mut deflate) = (0, 0, 0, 0);
        let mut disagreements = Vec::new();
        for (name, bytes) in files() {
            let Some(offset) = dicm_offset(&bytes) else { continue }; // refused before dicom-rs
            let deflated = bytes.windows(22).any(|w| w == b"1.2.840.10008.1.2.1.99");
            let data_set = if deflated { cta2mbf::io::gzip::inflated_capacity(bytes.len()) } else { bytes.len() };
            let bound = 4 * data_set + (1 << 20);
            for header_only in [true, false] {
                let read = if header_only { "header-only" } else { "whole" };
                match check_lengths(Path::new(&name), &bytes, header_only) {
                    Ok(()) => {
                        accepted += 1;
                        let (_, largest) = dicom_rs(&bytes, offset, header_only);
                        if largest > bound {
                            disagreements.push(format!("{name} ({read}): accepted, but dicom-rs requested {largest} bytes (bound {bound})"));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if message.contains("corrupt deflated data set") {
                            deflate += 1;
                            continue;
                        }
                        let n = claimed(&message).unwrap_or_else(|| panic!("{name}: a refusal without a claimed length: {message}"));
                        if n > CAP {
                            refused_over_cap += 1;
                            continue;
                        }
                        refused_checked += 1;
                        let (ok, largest) = dicom_rs(&bytes, offset, header_only);
                        if ok && largest < n {
                            disagreements.push(format!("{name} ({read}): refused ({message}), but dicom-rs read it allocating at most {largest} bytes"));
                        }
                    }
                }
            }
        }
        println!(
            "reads: {accepted} accepted and bounded, {refused_checked} refused with dicom-rs failing or allocating the refused length, {refused_over_cap} refused over {CAP} bytes (not run), {deflate} corrupt deflate streams"
        );
        assert!(disagreements.is_empty(), "the length check and dicom-rs disagree:\n{}", disagreements.join("\n"));
        assert!(accepted > 0 && refused_checked > 0);
    }
}
