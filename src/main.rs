//! The `hark` binary: parses the command line, sets up logging, runs a command, and
//! maps the outcome to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hark::commands::Cli::parse();
    // One thread per stage is the design: candle's matmuls would otherwise fan out to
    // every core (rayon), which at our sizes costs 2-3x more CPU than it saves in wall
    // time and steals the core the capture and dsp stages need. A user's own
    // RAYON_NUM_THREADS still wins.
    // Training is the exception: it is a batch job and may use every core.
    let training = matches!(cli.command, hark::commands::Command::Train { .. });
    if std::env::var_os("RAYON_NUM_THREADS").is_none() && !training {
        // SAFETY: nothing else runs yet (no thread has been spawned), so no other
        // thread can be reading the environment while it changes.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    match hark::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if hark::commands::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain on one line: "file: key = value: why".
            eprintln!("hark: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
