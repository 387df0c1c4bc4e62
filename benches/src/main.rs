//! `sessiond-bench`: flags → validated run → runtime → load → report (text, or JSON with
//! `--json`). Exit codes: 0 done (even with error replies, which the report counts), 1 the run
//! failed (cannot connect, connection lost), 64 unusable flags.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use sessiond_bench::{run, Args};

/// Exit code for unusable flags (sysexits' EX_USAGE, as the server uses).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (threads, json, quiet) = (args.threads, args.json, args.quiet);
    let config = match args.validate() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sessiond-bench: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sessiond-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The progress line is for a person watching: not when the output goes to a file or a pipe.
    let progress = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let report = match runtime.block_on(run(&config, progress)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("sessiond-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let text = if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => text + "\n",
            Err(error) => {
                eprintln!("sessiond-bench: cannot write the report: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.to_string()
    };
    // A reader that went away (`| head`) is not a failure of the run; `print!` would panic.
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("sessiond-bench: cannot write the report: {error}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
