//! The `cta2mbf` binary: parses the command line and reports errors in one line.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// Writing to a closed pipe (`cta2mbf info f.nii --json | head -1`) ends the process quietly,
/// as it does for C tools, instead of making `println!` panic: the one place that handles it.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Keeps freed large buffers in the heap for reuse. glibc serves blocks above its mmap
/// threshold (at most 32 MiB) with fresh `mmap` pages and unmaps them on free, so every
/// activation of a training step at 64³ (32 channels: 33.5 MB) cost page faults and the
/// kernel's zeroing of every page, a fifth of the step in a profile. With the threshold at
/// 1 GiB such buffers come from the heap and are reused; the heap's top is still returned
/// above 256 MiB free.
fn reuse_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called at start-up before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    reuse_large_allocations();
    // Usage errors exit with 2 (clap's own convention); failures with 1.
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cta2mbf: error: {e}");
            ExitCode::from(1)
        }
    }
}
