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

fn main() -> ExitCode {
    quiet_on_closed_pipe();
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
