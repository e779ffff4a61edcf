//! `zoom-relay`: parses the command line, loads the settings, sets up logging, and hands over to
//! one component's library. Nothing else lives here.

mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay_core::Settings;
use relay_core::broker::Broker;
use relay_core::shutdown;
use tokio_util::sync::CancellationToken;
use zoom_api::ZoomClient;
use zoom_api::client::Capability;

#[derive(Parser)]
#[command(
    name = "zoom-relay",
    version,
    about = "Moves Zoom cloud recordings off Zoom's cloud."
)]
struct Cli {
    /// TOML configuration file (default: ./zoom-relay.toml when present). Every key can be
    /// overridden by an environment variable ZOOM_RELAY__<SECTION>__<KEY>.
    #[arg(long, short, global = true, env = "ZOOM_RELAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive Zoom event notifications and store them in RabbitMQ.
    Ingress,
    /// Plan recording events into file tasks and download files into staging.
    Download,
    /// Write each meeting's manifest once its files are staged (and join segments, if enabled).
    Assemble,
    /// Copy staged files and manifests to each account's destination, verified.
    Upload,
    /// Delete cloud recordings whose upload is verified (accounts with delete_after_upload).
    Cleanup,
    /// Ingress and every stage in one process: a whole single-machine deployment.
    Run,
    /// Check every account's credentials against Zoom: token, a cheap read, needed scopes.
    Check,
    /// Run the Zoom simulator, or send it events (see `zoom-relay sim --help`).
    Sim(sim::SimArgs),
    /// Print the effective configuration, secrets redacted.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading configuration")?;
    relay_core::telemetry::init(&settings.log);
    match cli.command {
        Command::Ingress => run_components(settings, &[Component::Ingress]).await,
        Command::Download => run_components(settings, &[Component::Download]).await,
        Command::Assemble => run_components(settings, &[Component::Assemble]).await,
        Command::Upload => run_components(settings, &[Component::Upload]).await,
        Command::Cleanup => run_components(settings, &[Component::Cleanup]).await,
        Command::Run => run_components(settings, &Component::ALL).await,
        Command::Check => check(&settings).await,
        Command::Sim(arguments) => sim::run(settings, arguments)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Config => {
            println!("{settings:#?}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Clone, Copy)]
enum Component {
    Ingress,
    Download,
    Assemble,
    Upload,
    Cleanup,
}

impl Component {
    const ALL: [Component; 5] = [
        Self::Ingress,
        Self::Download,
        Self::Assemble,
        Self::Upload,
        Self::Cleanup,
    ];
}

/// Runs `components` on one supervised broker connection until SIGTERM/SIGINT. The connection
/// closes only after every component drained, so in-flight work can still ack.
async fn run_components(settings: Settings, components: &[Component]) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal();
    let broker_shutdown = CancellationToken::new();
    let broker = Broker::start(&settings, broker_shutdown.clone());
    let settings = std::sync::Arc::new(settings);
    let mut running = tokio::task::JoinSet::new();
    for component in components {
        let (settings, broker, shutdown) = (settings.clone(), broker.clone(), shutdown.clone());
        match component {
            Component::Ingress => {
                let ingress = relay_ingress::Ingress::build(&settings, broker)
                    .with_context(|| format!("binding {}", settings.ingress.listen))?;
                running.spawn(async move { ingress.run(shutdown).await.context("ingress") });
            }
            Component::Download => {
                running.spawn(async move {
                    relay_download::run(&settings, broker, shutdown)
                        .await
                        .context("download")
                });
            }
            Component::Assemble => {
                running.spawn(async move {
                    relay_assemble::run(&settings, broker, shutdown)
                        .await
                        .context("assemble")
                });
            }
            Component::Upload => {
                running.spawn(async move {
                    relay_upload::run(&settings, broker, shutdown)
                        .await
                        .context("upload")
                });
            }
            Component::Cleanup => {
                running.spawn(async move {
                    relay_cleanup::run(&settings, broker, shutdown)
                        .await
                        .context("cleanup")
                });
            }
        }
    }
    let mut outcome = Ok(ExitCode::SUCCESS);
    while let Some(finished) = running.join_next().await {
        let result = finished
            .context("component panicked")
            .and_then(|result| result);
        if let Err(error) = result {
            // One component failing stops the process: ops restart it whole.
            shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    broker_shutdown.cancel();
    outcome
}

/// Prints `ok` or `FAILED` per account with Zoom's reason and the scopes the enabled features
/// lack; fails when any account does. Never prints a secret.
async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    if settings.accounts.is_empty() {
        println!("no [[accounts]] configured");
        return Ok(ExitCode::FAILURE);
    }
    let mut healthy = true;
    for account in &settings.accounts {
        let mut wanted = vec![Capability::ReadRecordings, Capability::ReadUsers];
        if account.delete_after_upload != relay_core::settings::DeleteAfterUpload::Off {
            wanted.push(Capability::DeleteRecordings);
        }
        let client =
            ZoomClient::new(&settings.zoom, account).context("building the Zoom client")?;
        let report = client.check(&wanted).await;
        match &report.result {
            Ok(()) if report.missing.is_empty() => println!("ok      {}", report.account),
            Ok(()) => println!("FAILED  {}: missing scopes", report.account),
            Err(reason) => println!("FAILED  {}: {reason}", report.account),
        }
        for capability in &report.missing {
            println!("        needs {}", capability.describe());
        }
        healthy &= report.result.is_ok() && report.missing.is_empty();
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
