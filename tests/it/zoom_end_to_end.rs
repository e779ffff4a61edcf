//! The simulator's events, signed as Zoom signs them, pass the real ingress.

use std::time::Duration;

use secrecy::SecretString;
use zoom_sim::MeetingSpec;

use crate::helpers::*;
use crate::zoom_client::TestZoom;

#[tokio::test]
async fn simulator_events_verify_with_the_ingress() {
    let mut app = TestApp::spawn().await;
    let zoom = TestZoom::start().await;
    let created = zoom.create(&MeetingSpec::default()).await;
    let events = [
        created.recording_completed.to_string(),
        zoom_sim::scenario::url_validation_event().to_string(),
    ];
    let secret = SecretString::from(ACME_TOKEN);
    let url = app.url("/zoom/webhook");
    for event in &events {
        let delivery = zoom_sim::send::post_signed(&app.http, &url, &secret, event)
            .await
            .expect("posted");
        assert_eq!(delivery.status, 200, "{}", delivery.body);
    }
    let stored = app.tap.next(Duration::from_secs(10)).await.expect("stored");
    assert_eq!(stored.data, events[0].as_bytes());
    assert_eq!(stored.routing_key.as_str(), "recording.completed");
}
