//! Fuzz target: `cta2mbf::fuzz::Target::DicomSeries` (see `src/fuzz.rs`).
#![no_main]

use cta2mbf::fuzz::{Target, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Accepted or refused with an error: both are fine; a panic, a hang or an
    // allocation beyond -rss_limit_mb is a bug.
    let _ = run(Target::DicomSeries, data);
});
