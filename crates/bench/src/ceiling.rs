//! The broker's own ceiling: a plain lapin publisher, persistent, `mandatory`, with confirms,
//! on `channels` channels of one connection, each keeping `window` confirms in flight.
//!
//! One channel is one Erlang process in RabbitMQ and one confirm stream in lapin: a single
//! channel caps the rate well below what the broker can route and store. The ceiling is the
//! rate at which more channels or a wider window no longer help, which `--channels 1,2,4,8
//! --window 1,16,64,256` shows in one run.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

pub struct Target {
    pub exchange: String,
    pub routing_key: String,
}

pub struct Published {
    pub confirmed: u64,
    pub seconds: f64,
}

/// Publishes `body` for `duration` and counts the acks, until the last confirm arrived.
pub async fn publish(
    url: &str,
    target: &Target,
    channels: usize,
    window: usize,
    body: &[u8],
    duration: Duration,
) -> anyhow::Result<Published> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let started = Instant::now();
    let mut publishers = Vec::with_capacity(channels);
    for _ in 0..channels.max(1) {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let (exchange, routing_key) = (target.exchange.clone(), target.routing_key.clone());
        let body = body.to_vec();
        let window = window.max(1);
        publishers.push(tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut confirmed = 0u64;
            while started.elapsed() < duration {
                while pending.len() < window {
                    let confirm = channel
                        .basic_publish(
                            exchange.as_str().into(),
                            routing_key.as_str().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..Default::default()
                            },
                            &body,
                            BasicProperties::default().with_delivery_mode(2),
                        )
                        .await?;
                    pending.push(confirm);
                }
                if let Some(confirm) = pending.next().await
                    && confirm?.is_ack()
                {
                    confirmed += 1;
                }
            }
            while let Some(confirm) = pending.next().await {
                if confirm?.is_ack() {
                    confirmed += 1;
                }
            }
            Ok::<_, lapin::Error>(confirmed)
        }));
    }
    let mut confirmed = 0;
    for publisher in publishers {
        confirmed += publisher.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = connection.close(200, "done".into()).await;
    Ok(Published { confirmed, seconds })
}
