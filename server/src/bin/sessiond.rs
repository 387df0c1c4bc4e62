//! The `sessiond` daemon: logging → configuration → bind → serve until a signal → drain → exit.

use std::process::ExitCode;

use clap::Parser;
use sessiond::config::EXIT_BAD_CONFIG;
use sessiond::{Config, LogFormat, RawConfig, Server};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match RawConfig::parse().with_file().and_then(RawConfig::validate) {
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "listening on {}",
        server.local_addr()
    );
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT received"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT will stop the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!("interrupt received");
    }
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
