//! `zoom-relay sim`: serve the simulator, or make it send events.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use relay_app::Settings;
use relay_core::shutdown;
use serde_json::Value;
use zoom_sim::{CreatedMeeting, MeetingSpec, Simulator};

#[derive(Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Serve the simulated Zoom (the default).
    Serve,
    /// Create a meeting in a running simulator and post the events Zoom would send about it,
    /// signed with the account's secret token; or post a JSON file as an event.
    Send(SendArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// A meeting with two segments, two views, audio, chat, and a transcript sent later.
    Meeting,
    /// The same as a webinar.
    Webinar,
    /// Zoom's endpoint validation challenge.
    UrlValidation,
}

#[derive(Args)]
struct SendArgs {
    /// Where to post (the ingress's webhook URL).
    #[arg(long, default_value = "http://127.0.0.1:8080/zoom/webhook")]
    to: String,
    /// The running simulator (default: from `sim.listen`).
    #[arg(long)]
    sim: Option<String>,
    #[arg(long, value_enum, default_value = "meeting")]
    scenario: Scenario,
    /// Post this JSON file instead of a scenario.
    #[arg(long, conflicts_with = "scenario")]
    file: Option<PathBuf>,
    /// Account (name) whose secret token signs; the first one by default.
    #[arg(long)]
    account: Option<String>,
    /// Also send Zoom's duplicate `recording.completed` (other download URLs and token).
    #[arg(long)]
    duplicate: bool,
    /// Bytes per MP4 file.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    media_size: u64,
    #[arg(long, default_value_t = 2)]
    segments: u32,
}

pub async fn run(settings: Settings, arguments: SimArgs) -> anyhow::Result<()> {
    match arguments.command.unwrap_or(SimCommand::Serve) {
        SimCommand::Serve => {
            let simulator = Simulator::build(&settings.sim, relay_app::sim_accounts(&settings))
                .with_context(|| format!("binding {}", settings.sim.listen))?;
            simulator
                .run(shutdown::on_signal())
                .await
                .context("serving")
        }
        SimCommand::Send(send) => send_events(&settings, send).await,
    }
}

async fn send_events(settings: &Settings, send: SendArgs) -> anyhow::Result<()> {
    let account = match &send.account {
        Some(name) => settings.accounts.iter().find(|a| &a.name == name),
        None => settings.accounts.first(),
    }
    .context("no such account in [[accounts]]")?;
    let secret = account
        .secret_tokens
        .first()
        .context("the account has no secret token")?;
    let http = reqwest::Client::new();
    let mut events: Vec<(String, Value)> = Vec::new();
    if let Some(path) = &send.file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let event: Value = serde_json::from_str(&text).context("the file is not JSON")?;
        events.push(("file".into(), event));
    } else if let Scenario::UrlValidation = send.scenario {
        events.push((
            "url_validation".into(),
            zoom_sim::scenario::url_validation_event(),
        ));
    } else {
        let sim = send.sim.clone().unwrap_or_else(|| {
            settings
                .sim
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", settings.sim.listen))
        });
        let spec = MeetingSpec {
            account: Some(account.name.clone()),
            webinar: matches!(send.scenario, Scenario::Webinar),
            media_size: send.media_size,
            segments: send.segments,
            ..MeetingSpec::default()
        };
        let response = http
            .post(format!("{}/_sim/meetings", sim.trim_end_matches('/')))
            .json(&spec)
            .send()
            .await
            .with_context(|| format!("reaching the simulator at {sim}"))?;
        if !response.status().is_success() {
            bail!(
                "the simulator refused the meeting: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let created: CreatedMeeting = response
            .json()
            .await
            .context("reading the created meeting")?;
        println!(
            "meeting {} with {} files",
            created.uuid,
            created.files.len()
        );
        events.push(("recording.completed".into(), created.recording_completed));
        if send.duplicate {
            events.push((
                "recording.completed (duplicate)".into(),
                created.recording_completed_duplicate,
            ));
        }
        // Zoom finishes the transcript later, then tells about it.
        let released = http
            .post(format!("{}/_sim/release", sim.trim_end_matches('/')))
            .json(&serde_json::json!({ "uuid": created.uuid }))
            .send()
            .await
            .context("releasing the transcript")?;
        if released.status().is_success() {
            let transcript: Value = released.json().await.context("the transcript event")?;
            if transcript["payload"]["object"]["recording_files"]
                .as_array()
                .is_some_and(|files| !files.is_empty())
            {
                events.push(("recording.transcript_completed".into(), transcript));
            }
        }
    }
    for (name, event) in events {
        let delivery = zoom_sim::send::post_signed(&http, &send.to, secret, &event.to_string())
            .await
            .with_context(|| format!("posting to {}", send.to))?;
        println!("{name:<34} -> HTTP {} {}", delivery.status, delivery.body);
    }
    Ok(())
}
