//! The `sessiond` daemon: logging → configuration → bind (plaintext, and TLS with --tls-port) →
//! serve until a signal → drain → exit.

use std::process::ExitCode;

use clap::Parser;
use sessiond::config::Tool;
use sessiond::config::EXIT_BAD_CONFIG;
use sessiond::persist::loader;
use sessiond::{Clock, Config, LogFormat, RawConfig, Server};
use tracing_subscriber::EnvFilter;

/// mimalloc: its size classes fit a session-shaped key's block tightly, and it frees a mass
/// expiry's keys without merging neighbouring chunks as glibc's `free` does (the measurements
/// are in benches/RESULTS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let raw = match RawConfig::try_parse() {
        Ok(raw) => raw,
        // --help and --version are not errors; a flag that does not parse is a bad configuration
        // like any other, and exits as one rather than with clap's own exit code 2.
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let message = error.render().to_string();
            let message = message.trim_end();
            let message = message.strip_prefix("error: ").unwrap_or(message);
            eprintln!("sessiond: bad configuration: {message}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    match &raw.tool {
        Some(Tool::CheckSnapshot { file }) => return check_snapshot(file),
        Some(Tool::CheckAof { file, fix }) => return check_aof(file, *fix),
        Some(Tool::HashPassword) => return hash_password(),
        None => {}
    }
    let config = match raw.with_file().and_then(RawConfig::validate) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sessiond: bad configuration: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    if let Err(error) = init_logging(&config) {
        eprintln!("sessiond: bad configuration: log-level: {error}");
        return ExitCode::from(EXIT_BAD_CONFIG as u8);
    }
    if config.disable_thp {
        disable_transparent_huge_pages();
    }
    let runtime = match sessiond::build_runtime(&config) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--disable-thp yes` (the default): no transparent huge pages for this process, as Redis does
/// with `prctl(PR_SET_THP_DISABLE)`. The allocator asks for huge pages, and the fault that first
/// touches one zeroes it whole, stalling the thread whenever the keyspace grows. Pages already
/// huge stay so. A refusal is logged, not fatal.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() {
    let (disable, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: PR_SET_THP_DISABLE takes integers and touches no memory of this process.
    let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, unused, unused, unused) };
    if status != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot turn transparent huge pages off (--disable-thp)");
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

/// `sessiond hash-password`: one line of standard input → its SHA-256 digest, for a
/// `[[user]]`'s `password-sha256` (the password never appears in `ps` or the shell history
/// when typed at the prompt or piped from a file).
fn hash_password() -> ExitCode {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) => {
            eprintln!("sessiond hash-password: no password on standard input");
            ExitCode::FAILURE
        }
        Ok(_) => {
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("sessiond hash-password: the password is empty");
                return ExitCode::FAILURE;
            }
            println!("{}", sessiond::auth::password_sha256(password));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sessiond hash-password: cannot read standard input: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `sessiond check-snapshot FILE`: verifies the file as a start would, and prints its counts.
fn check_snapshot(file: &std::path::Path) -> ExitCode {
    match loader::check(file, Clock::system().now_ms()) {
        Ok(summary) => {
            println!(
                "snapshot {}: OK (format version {}, written at {} ms, {} bytes)\n\
                 records: {} (strings {}, hashes {}, sets {}, sessions {}, deletions {})\n\
                 already expired (would not load): {}",
                file.display(),
                summary.format_version,
                summary.written_at_ms,
                summary.bytes,
                summary.records,
                summary.strings,
                summary.hashes,
                summary.sets,
                summary.sessions,
                summary.deletes,
                summary.expired,
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sessiond: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `sessiond check-aof FILE [--fix]`: what each file of the log holds, or where it is bad.
fn check_aof(file: &std::path::Path, fix: bool) -> ExitCode {
    use sessiond::persist::aof_load::{check, Checked};
    match check(file, fix, Clock::system().now_ms()) {
        Ok(checked) => {
            for part in checked {
                match part {
                    Checked::Base(path, summary) => println!(
                        "base {}: OK ({} records, {} bytes)",
                        path.display(),
                        summary.records,
                        summary.bytes
                    ),
                    Checked::Incr(path, summary) => println!(
                        "log {}: OK ({} frames, {} records, {} bytes)",
                        path.display(),
                        summary.frames,
                        summary.records,
                        summary.good_bytes
                    ),
                }
            }
            if fix {
                println!("append-only log {}: valid (after --fix)", file.display());
            } else {
                println!("append-only log {}: valid", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sessiond: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // The handlers are installed before the address is announced: a supervisor (or a test) that
    // sends SIGTERM as soon as it reads `listening on` gets a graceful stop, not the default
    // action of the signal, which kills the process.
    let signals = stop_signals();
    let server = Server::bind(config).await?;
    // Before `listening on`, which scripts and supervisors wait for as the sign of readiness.
    if let Some(tls_addr) = server.tls_local_addr() {
        tracing::info!("listening for TLS on {tls_addr}");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "listening on {}",
        server.local_addr()
    );
    notify_ready();
    server.run_with_signals(signals).await?;
    Ok(())
}

/// Tells systemd (`Type=notify`) that the server is ready: the snapshot is loaded and the
/// listeners are bound. `READY=1` goes in one datagram to the unix socket `$NOTIFY_SOCKET`
/// names (a path, or `@name` in the abstract namespace), as `sd_notify` sends it; without the
/// variable, nothing is sent. A failure is logged: the unit's start timeout then reports it.
#[cfg(target_os = "linux")]
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let send = || -> std::io::Result<()> {
        let addr = match target.as_encoded_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&target)?,
        };
        UnixDatagram::unbound()?.send_to_addr(b"READY=1", &addr)?;
        Ok(())
    };
    if let Err(error) = send() {
        tracing::warn!(%error, "cannot tell systemd that the server is ready (NOTIFY_SOCKET)");
    }
}

#[cfg(not(target_os = "linux"))]
fn notify_ready() {}

/// Installs the SIGINT and SIGTERM handlers now; each signal then sends one stop request. The
/// first starts a shutdown; one during a shutdown forces its exit (see
/// [`Server::run_with_signals`]).
#[cfg(unix)]
fn stop_signals() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    // Created here, not in the task: a handler is installed when its stream is created.
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
    ] {
        match signal(kind) {
            Ok(mut stream) => {
                let sender = sender.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        tracing::info!("{name} received");
                        if sender.send(()).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "cannot listen for {name}"),
        }
    }
    // `sender` dropped here: with no handler at all, the server learns that no signal will come.
    receiver
}

/// One stop request per Ctrl-C.
#[cfg(not(unix))]
fn stop_signals() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("interrupt received");
            if sender.send(()).is_err() {
                return;
            }
        }
    });
    receiver
}

fn init_logging(config: &Config) -> Result<(), String> {
    // RUST_LOG, when set, wins over --log-level, as operators of Rust services expect.
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::try_new(value),
        _ => EnvFilter::try_new(&config.log_level),
    }
    .map_err(|e| e.to_string())?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
