//! Benchmark helpers for `make bench-*` (see docs/benchmarks.md).
//!
//! - `sign`: a wrk Lua script posting signed ~2 KiB `recording.completed` deliveries, each
//!   distinct ([`event`]).
//! - `bare-http`: the HTTP ceiling, an actix-web handler that answers 200 and does nothing else.
//! - `minimal`: the ingress's essential work and nothing else ([`minimal`]).
//! - `broker-publish`: the broker ceiling, channels × confirms in flight ([`ceiling`]).
//! - `open-loop`: a fixed rate of signed deliveries, latency from the scheduled send
//!   ([`open_loop`]).
//! - `queue-depth`: how many messages a queue holds.

mod ceiling;
mod event;
mod minimal;
mod open_loop;

use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::{Parser, Subcommand};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a wrk script posting signed recording.completed deliveries of about `size` bytes,
    /// each distinct.
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
    /// The ingress's essential work only: verify the signature, publish with confirms, answer.
    Minimal {
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: String,
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        exchange: String,
        #[arg(long, default_value = "recording.completed")]
        routing_key: String,
        #[arg(long, default_value_t = 4)]
        channels: usize,
    },
    /// Publish persistent messages with confirms for `seconds` to `exchange` (the ingress's, so
    /// the broker does the same routing and storing work), on each of `channels` channels with
    /// `window` confirms in flight; lists run every combination, one JSON line each.
    BrokerPublish {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        exchange: String,
        #[arg(long, default_value = "recording.completed")]
        routing_key: String,
        #[arg(long, value_delimiter = ',', default_value = "4")]
        channels: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "64")]
        window: Vec<usize>,
        #[arg(long, default_value_t = 2048)]
        size: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Post signed deliveries at a fixed `rate` for `seconds`; print latency percentiles
    /// measured from each request's scheduled send time (JSON).
    OpenLoop {
        #[arg(long)]
        url: String,
        #[arg(long)]
        secret: String,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 2048)]
        size: usize,
    },
    /// The open-loop schedule straight to the broker (persistent publishes with confirms on
    /// `channels` channels): latency from scheduled time to confirm, as JSON like `open-loop`.
    OpenLoopBroker {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[arg(long)]
        exchange: String,
        #[arg(long, default_value = "recording.completed")]
        routing_key: String,
        #[arg(long, default_value_t = 4)]
        channels: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 2048)]
        size: usize,
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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sign { secret, size } => print!("{}", event::wrk_script(&secret, size)),
        Command::BareHttp { listen } => {
            HttpServer::new(|| {
                App::new().default_service(web::to(|| async { HttpResponse::Ok().finish() }))
            })
            .bind(listen)?
            .run()
            .await?;
        }
        Command::Minimal {
            listen,
            url,
            secret,
            exchange,
            routing_key,
            channels,
        } => minimal::serve(&listen, &url, secret, exchange, routing_key, channels).await?,
        Command::BrokerPublish {
            url,
            exchange,
            routing_key,
            channels,
            window,
            size,
            seconds,
        } => {
            let target = ceiling::Target {
                exchange,
                routing_key,
            };
            let body = event::sample_event(size).into_bytes();
            for &channels in &channels {
                for &window in &window {
                    let published = ceiling::publish(
                        &url,
                        &target,
                        channels,
                        window,
                        &body,
                        Duration::from_secs(seconds),
                    )
                    .await?;
                    println!(
                        "{{\"channels\": {channels}, \"window\": {window}, \"confirmed\": {}, \"seconds\": {:.2}, \"per_second\": {:.0}}}",
                        published.confirmed,
                        published.seconds,
                        published.confirmed as f64 / published.seconds
                    );
                }
            }
        }
        Command::OpenLoop {
            url,
            secret,
            rate,
            seconds,
            size,
        } => {
            let report =
                open_loop::run(&url, &secret, size, rate, Duration::from_secs(seconds)).await?;
            print_open_loop(&report, rate);
        }
        Command::OpenLoopBroker {
            url,
            exchange,
            routing_key,
            channels,
            rate,
            seconds,
            size,
        } => {
            let target = ceiling::Target {
                exchange,
                routing_key,
            };
            let report = open_loop::run_broker(
                &url,
                &target,
                channels,
                size,
                rate,
                Duration::from_secs(seconds),
            )
            .await?;
            print_open_loop(&report, rate);
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
        start_at: 0,
        end_at: None,
    };
    let started = Instant::now();
    // The file is written on a thread of its own, straight from the received buffers (no copy
    // into an async file's buffer), so writing overlaps receiving as hashing does.
    let mut target = std::fs::File::create(out)?;
    let (chunks, mut queue) = tokio::sync::mpsc::channel(16);
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = queue.blocking_recv() {
            let chunk: bytes::Bytes = chunk;
            std::io::Write::write_all(&mut target, &chunk)?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut download = client.download(source).await?;
    while let Some(chunk) = download.next_chunk().await? {
        if chunks.send(chunk).await.is_err() {
            break;
        }
    }
    drop(chunks);
    writer.await??;
    let downloaded = download.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        downloaded.sha256.as_deref() == Some(file.sha256.as_str()),
        "digest mismatch"
    );
    println!(
        "{{\"bytes\": {}, \"seconds\": {seconds:.3}, \"mb_per_s\": {:.1}}}",
        downloaded.bytes,
        downloaded.bytes as f64 / 1_048_576.0 / seconds
    );
    Ok(())
}

fn print_open_loop(report: &open_loop::Report, rate: u64) {
    println!(
        "{{\"sent\": {}, \"ok\": {}, \"seconds\": {:.2}, \"rate\": {rate}, \"p50_ms\": {:.2}, \"p90_ms\": {:.2}, \"p99_ms\": {:.2}, \"p999_ms\": {:.2}, \"max_ms\": {:.2}}}",
        report.sent,
        report.ok,
        report.seconds,
        report.percentile_ms(50.0),
        report.percentile_ms(90.0),
        report.percentile_ms(99.0),
        report.percentile_ms(99.9),
        report.percentile_ms(100.0),
    );
}
