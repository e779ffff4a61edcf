//! Benchmark helpers for `make bench-*` (see docs/benchmarks.md).
//!
//! - `sign`: a signed ~2 KiB `recording.completed` request as a wrk Lua script.
//! - `bare-http`: the HTTP ceiling, an actix-web handler that answers 200 and does nothing else.
//! - `broker-publish`: the broker ceiling, a plain lapin publisher with the ingress's message size,
//!   persistence, confirms and in-flight window.
//! - `queue-depth`: how many messages a queue holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::{Parser, Subcommand};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use secrecy::SecretString;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a wrk script posting one signed recording.completed of about `size` bytes.
    Sign {
        #[arg(long)]
        secret: String,
        #[arg(long, default_value_t = 2048)]
        size: usize,
    },
    /// Serve 200 on every request, nothing else.
    BareHttp {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
    },
    /// Publish persistent messages with confirms, `in_flight` at a time, for `seconds`, to
    /// `exchange` (the ingress's, so the broker does the same routing and storing work).
    BrokerPublish {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        exchange: String,
        #[arg(long, default_value = "recording.completed")]
        routing_key: String,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        #[arg(long, default_value_t = 2048)]
        size: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Declare a durable queue bound to `exchange` with `#` (counts what the ingress stored).
    Tap {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        exchange: String,
        #[arg(long)]
        queue: String,
    },
    /// Delete queues and an exchange left by a benchmark run.
    Cleanup {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        exchange: String,
        #[arg(long)]
        queues: Vec<String>,
    },
    /// Create a one-file meeting of `size` bytes in a running simulator; print what a downloader
    /// needs (JSON), including the URL and token curl uses in the same run.
    SimMeeting {
        #[arg(long)]
        sim: String,
        #[arg(long)]
        size: u64,
    },
    /// Download the file `sim-meeting` described with zoom-relay's client into `out`.
    Download {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long)]
        meeting: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the number of messages in `queue` (declared passively).
    QueueDepth {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        queue: String,
    },
}

fn sample_event(size: usize) -> String {
    let mut event = serde_json::json!({
        "event": "recording.completed",
        "event_ts": 1_700_000_000_000_i64,
        "payload": {
            "account_id": "bench-account",
            "object": {
                "uuid": "4444AAAiAAAAAiAiAiiAii==", "id": 1234567890, "topic": "Benchmark",
                "host_email": "host@example.com", "start_time": "2026-11-23T10:00:00Z",
                "recording_files": [{
                    "id": "ed6c2f27-2ae7-42f4-b3d0-835b493e4fa8", "file_type": "MP4",
                    "file_size": 246560, "status": "completed",
                    "recording_type": "shared_screen_with_speaker_view",
                    "download_url": "https://zoom.example/rec/download/abc"
                }],
                "padding": ""
            }
        },
        "download_token": "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig"
    });
    let missing = size.saturating_sub(event.to_string().len());
    event["payload"]["object"]["padding"] = serde_json::Value::String("x".repeat(missing));
    event.to_string()
}

fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sign { secret, size } => {
            let body = sample_event(size);
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64;
            let signature =
                zoom_api::webhook::sign(&SecretString::from(secret), timestamp, body.as_bytes());
            println!("wrk.method = \"POST\"");
            println!("wrk.body = {}", lua_string(&body));
            println!("wrk.headers[\"Content-Type\"] = \"application/json\"");
            println!("wrk.headers[\"x-zm-request-timestamp\"] = \"{timestamp}\"");
            println!("wrk.headers[\"x-zm-signature\"] = \"{signature}\"");
        }
        Command::BareHttp { listen } => {
            HttpServer::new(|| {
                App::new().default_service(web::to(|| async { HttpResponse::Ok().finish() }))
            })
            .bind(listen)?
            .run()
            .await?;
        }
        Command::BrokerPublish {
            url,
            exchange,
            routing_key,
            in_flight,
            size,
            seconds,
        } => {
            let target = Target {
                exchange,
                routing_key,
            };
            broker_publish(&url, &target, in_flight, size, Duration::from_secs(seconds)).await?
        }
        Command::Tap {
            url,
            exchange,
            queue,
        } => {
            let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_bind(
                    queue.into(),
                    exchange.into(),
                    "#".into(),
                    Default::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Command::Cleanup {
            url,
            exchange,
            queues,
        } => {
            let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            for queue in queues {
                channel
                    .queue_delete(queue.into(), Default::default())
                    .await?;
            }
            channel
                .exchange_delete(exchange.into(), Default::default())
                .await?;
        }
        Command::SimMeeting { sim, size } => sim_meeting(&sim, size).await?,
        Command::Download {
            config,
            meeting,
            out,
        } => download(&config, &meeting, &out).await?,
        Command::QueueDepth { url, queue } => {
            let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let declared = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            println!("{}", declared.message_count());
        }
    }
    Ok(())
}

struct Target {
    exchange: String,
    routing_key: String,
}

async fn broker_publish(
    url: &str,
    target: &Target,
    in_flight: usize,
    size: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let target = Arc::new((target.exchange.clone(), target.routing_key.clone()));
    let body = Arc::new(sample_event(size).into_bytes());
    let confirmed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (channel, body, confirmed) = (channel.clone(), body.clone(), confirmed.clone());
            let target = target.clone();
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    let confirm = channel
                        .basic_publish(
                            target.0.as_str().into(),
                            target.1.as_str().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..Default::default()
                            },
                            &body,
                            BasicProperties::default().with_delivery_mode(2),
                        )
                        .await?
                        .await?;
                    if confirm.is_ack() {
                        confirmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<_, lapin::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = confirmed.load(Ordering::Relaxed);
    println!(
        "{{\"confirmed\": {count}, \"seconds\": {elapsed:.2}, \"per_second\": {:.0}}}",
        count as f64 / elapsed
    );
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BenchFile {
    meeting_uuid: String,
    file_id: String,
    url: String,
    token: String,
    size: u64,
    sha256: String,
}

async fn sim_meeting(sim: &str, size: u64) -> anyhow::Result<()> {
    let spec = zoom_sim::MeetingSpec {
        segments: 1,
        views: vec!["shared_screen_with_speaker_view".into()],
        audio: false,
        chat: false,
        transcript: false,
        media_size: size,
        ..zoom_sim::MeetingSpec::default()
    };
    let created: zoom_sim::CreatedMeeting = reqwest::Client::new()
        .post(format!("{sim}/_sim/meetings"))
        .json(&spec)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let event: zoom_api::model::RecordingEvent =
        serde_json::from_value(created.recording_completed)?;
    let file = event
        .payload
        .object
        .recording_files
        .first()
        .ok_or_else(|| anyhow::anyhow!("no file"))?;
    let file_id = file.id.clone().unwrap_or_default();
    let served = &created.files[&file_id];
    let description = BenchFile {
        meeting_uuid: created.uuid.clone(),
        url: file
            .download_url
            .as_ref()
            .map(|u| u.expose().to_owned())
            .unwrap_or_default(),
        token: event
            .download_token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default(),
        size: served.size,
        sha256: served.sha256.clone(),
        file_id,
    };
    println!("{}", serde_json::to_string(&description)?);
    Ok(())
}

async fn download(
    config: &std::path::Path,
    meeting: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let settings = relay_app::Settings::load(Some(config))?;
    let account = settings
        .accounts
        .first()
        .ok_or_else(|| anyhow::anyhow!("no account"))?;
    let client = zoom_api::ZoomClient::new(&settings.zoom, &account.name, account.credentials())?;
    let file: BenchFile = serde_json::from_str(&std::fs::read_to_string(meeting)?)?;
    let source = zoom_api::client::FileSource {
        meeting_uuid: file.meeting_uuid,
        file_id: file.file_id,
        download_url: zoom_api::model::Sensitive::new(file.url),
        download_token: Some(zoom_api::model::Sensitive::new(file.token)),
        expected_size: Some(file.size),
    };
    let started = Instant::now();
    let mut writer = tokio::fs::File::create(out).await?;
    let downloaded = client.download(source).await?.copy_to(&mut writer).await?;
    tokio::io::AsyncWriteExt::flush(&mut writer).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(downloaded.sha256 == file.sha256, "digest mismatch");
    println!(
        "{{\"bytes\": {}, \"seconds\": {seconds:.3}, \"mb_per_s\": {:.1}}}",
        downloaded.bytes,
        downloaded.bytes as f64 / 1_048_576.0 / seconds
    );
    Ok(())
}
