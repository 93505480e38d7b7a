//! The `cta2mbf` binary: parses the command line and reports errors in one line.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
