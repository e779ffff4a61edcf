//! Reconciliation, backfill and import: recordings whose webhooks never arrived are found by
//! listing the simulator's API and land like any other.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use relay_app::{Component, Oneshot};
use relay_core::broker::StageName;
use relay_reconcile::{Handover, Summary};
use serde_json::Value;
use zoom_sim::{ApiFaults, CreatedMeeting, MeetingSpec};

use crate::helpers::*;
use crate::pipeline::{TestPipeline, WAIT, assert_delivered, small};

fn complete(spec: MeetingSpec) -> MeetingSpec {
    small(MeetingSpec {
        transcript_later: false,
        segments: 1,
        ..spec
    })
}

async fn faults(pipeline: &TestPipeline, faults: ApiFaults) {
    let response = pipeline
        .http
        .post(format!("{}/_sim/faults", pipeline.sim))
        .json(&faults)
        .send()
        .await
        .expect("faults");
    assert_eq!(response.status(), 204);
}

/// One `reconcile --once` over every account, as the command runs it.
pub(crate) async fn reconcile_once(pipeline: &TestPipeline) -> Vec<Summary> {
    let oneshot = Oneshot::connect(&pipeline.settings)
        .await
        .expect("connected");
    oneshot.reconciler.once().await
}

fn acme(summaries: &[Summary]) -> &Summary {
    summaries
        .iter()
        .find(|summary| summary.account == "acme")
        .expect("acme's summary")
}

#[tokio::test]
async fn recordings_made_while_webhooks_were_lost_are_found_and_land_and_only_once() {
    let pipeline = TestPipeline::start(|_| {}).await;
    // Recorded while the ingress was down: Zoom's events never arrive.
    let mut lost = Vec::new();
    for spec in [
        complete(MeetingSpec::default()),
        complete(MeetingSpec {
            account: Some("globex".into()),
            ..MeetingSpec::default()
        }),
    ] {
        lost.push(pipeline.create(&spec).await);
    }
    let first = reconcile_once(&pipeline).await;
    assert_eq!(acme(&first).missing, 1, "{first:?}");
    assert_eq!(acme(&first).handed_over, 1);
    for created in &lost {
        let manifest = pipeline
            .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
            .await;
        assert_delivered(&pipeline, &manifest, created);
    }
    // Once uploaded and verified, the next pass hands nothing over again.
    let archived = eventually(WAIT, || async {
        let summaries = reconcile_once(&pipeline).await;
        summaries
            .iter()
            .all(|s| s.archived == 1 && s.handed_over == 0)
    })
    .await;
    assert!(archived, "archived meetings were handed over again");
}

#[tokio::test]
async fn a_transcript_that_arrived_later_without_its_event_is_completed() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline
        .create(&small(MeetingSpec {
            segments: 1,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let transcripts = created
        .files
        .values()
        .filter(|file| file.file_type == "TRANSCRIPT")
        .count();
    pipeline
        .wait_for_manifest(&created.uuid, |m| {
            m.files().count() == created.files.len() - transcripts
        })
        .await;
    // Zoom finishes the transcript; its event is lost.
    let _lost = pipeline.release_transcript(&created.uuid).await;
    let summaries = reconcile_once(&pipeline).await;
    assert_eq!(acme(&summaries).handed_over, 1, "{summaries:?}");
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_eq!(manifest.transcripts.len(), transcripts);
}

#[tokio::test]
async fn lists_every_page_of_two_month_windows_through_an_expiring_page_token_and_a_429_storm() {
    let pipeline = TestPipeline::start(|settings| {
        settings.sim.page_size_limit = 2;
        settings.reconcile.initial_lookback = Duration::from_secs(50 * 24 * 3600);
        settings.reconcile.backoff = Duration::from_millis(50);
    })
    .await;
    let mut created = Vec::new();
    for days_ago in [3, 4, 5, 35, 36, 37, 40] {
        let start = Utc::now() - TimeDelta::days(days_ago);
        created.push(
            pipeline
                .create(&complete(MeetingSpec {
                    start_time: Some(start.to_rfc3339()),
                    ..MeetingSpec::default()
                }))
                .await,
        );
    }
    faults(
        &pipeline,
        ApiFaults {
            expired_page_tokens: 1,
            rate_limited: 12,
            ..ApiFaults::default()
        },
    )
    .await;
    let summaries = reconcile_once(&pipeline).await;
    let summary = acme(&summaries);
    assert_eq!(summary.listed, created.len(), "{summary:?}");
    assert_eq!(summary.handed_over, created.len());
    for created in &created {
        pipeline
            .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
            .await;
    }
    let statuses: Vec<u64> = sim_requests(&pipeline.http, &pipeline.sim, "/v2/accounts/")
        .await
        .into_iter()
        .map(|(_, _, status)| status)
        .collect();
    assert!(statuses.contains(&429), "the storm was met: {statuses:?}");
    assert!(
        statuses.contains(&400),
        "a page token expired: {statuses:?}"
    );
}

#[tokio::test]
async fn an_account_that_may_not_list_account_wide_is_listed_user_by_user_inactive_ones_too() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let former = pipeline
        .create(&complete(MeetingSpec {
            host_email: zoom_sim::state::INACTIVE_HOST.into(),
            ..MeetingSpec::default()
        }))
        .await;
    let active = pipeline.create(&complete(MeetingSpec::default())).await;
    faults(
        &pipeline,
        ApiFaults {
            refuse_account_listing: true,
            ..ApiFaults::default()
        },
    )
    .await;
    let summaries = reconcile_once(&pipeline).await;
    assert_eq!(acme(&summaries).handed_over, 2, "{summaries:?}");
    for created in [&former, &active] {
        pipeline
            .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
            .await;
    }
    let by_user = sim_requests(&pipeline.http, &pipeline.sim, "/v2/users/")
        .await
        .iter()
        .filter(|(path, _, _)| path.ends_with("/recordings"))
        .count();
    assert!(by_user >= 2, "listed user by user ({by_user})");
}

#[tokio::test]
async fn two_reconciler_replicas_list_each_account_once() {
    let pipeline = TestPipeline::start(|_| {}).await;
    pipeline.create(&complete(MeetingSpec::default())).await;
    // Two replicas of `zoom-relay reconcile`, started together.
    let mut admins = Vec::new();
    for _ in 0..2 {
        let app = relay_app::App::build(pipeline.settings.clone(), &[Component::Reconcile])
            .expect("reconcile");
        admins.push(format!("http://127.0.0.1:{}/metrics", app.admin_port()));
        tokio::spawn(app.run(pipeline.shutdown.clone()));
    }
    // Each replica's first round, per account: done by one, skipped by the other.
    let rounds = eventually(WAIT, || async {
        let mut total = 0.0;
        for admin in &admins {
            let Ok(response) = pipeline.http.get(admin).send().await else {
                return false;
            };
            let metrics = response.text().await.unwrap_or_default();
            for account in ["acme", "globex"] {
                for outcome in ["done", "skipped"] {
                    total += metric_value(
                        &metrics,
                        &format!(
                            "zoom_relay_reconcile_passes_total{{account=\"{account}\",outcome=\"{outcome}\"}}"
                        ),
                    );
                }
            }
        }
        total >= 4.0
    })
    .await;
    assert!(rounds, "both replicas went through both accounts");
    // A pass lists its window month by month (Zoom's limit): each (account, month) once.
    let listings: Vec<(String, String)> =
        sim_requests(&pipeline.http, &pipeline.sim, "/v2/accounts/")
            .await
            .into_iter()
            .map(|(path, query, _)| (path, query))
            .collect();
    let distinct: std::collections::HashSet<_> = listings.iter().collect();
    assert_eq!(distinct.len(), listings.len(), "listed twice: {listings:?}");
    for account in ["acme", "globex"] {
        assert!(
            listings.iter().any(|(path, _)| path.contains(account)),
            "{account} listed: {listings:?}"
        );
    }
}

#[tokio::test]
async fn handed_over_soonest_auto_delete_first() {
    // No plan consumer: what reconciliation hands over stays in plan's queue, in order.
    let components = [Component::Ingress];
    let pipeline = TestPipeline::start_with(&components, |_| {}).await;
    let mut expected = Vec::new();
    for days_ago in [1, 20, 10] {
        let created = pipeline
            .create(&complete(MeetingSpec {
                start_time: Some((Utc::now() - TimeDelta::days(days_ago)).to_rfc3339()),
                ..MeetingSpec::default()
            }))
            .await;
        expected.push((days_ago, created.uuid));
    }
    let summaries = reconcile_once(&pipeline).await;
    assert_eq!(acme(&summaries).handed_over, 3);
    // Zoom deletes 30 days after the start: the oldest meeting first.
    expected.sort_by_key(|(days_ago, _)| -days_ago);
    let queued = wait_for_messages(
        &topology(&pipeline.settings).stage_queue(StageName::Plan),
        3,
        WAIT,
    )
    .await;
    let order: Vec<String> = queued
        .iter()
        .map(|message| {
            let body: Value = serde_json::from_slice(&message.delivery.data).expect("JSON");
            body["payload"]["object"]["uuid"]
                .as_str()
                .expect("uuid")
                .to_owned()
        })
        .collect();
    let wanted: Vec<String> = expected.into_iter().map(|(_, uuid)| uuid).collect();
    assert_eq!(order, wanted);
    let origin = queued[0]
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("origin").cloned());
    assert_eq!(
        origin,
        Some(lapin::types::AMQPValue::LongString("reconcile".into())),
        "never as if Zoom had signed it"
    );
}

#[tokio::test]
async fn backfill_dry_run_counts_and_sends_nothing_and_import_takes_a_uuid_or_a_numeric_id() {
    let components = [Component::Ingress];
    let pipeline = TestPipeline::start_with(&components, |_| {}).await;
    let one = pipeline.create(&complete(MeetingSpec::default())).await;
    let mut recurring: Vec<CreatedMeeting> = Vec::new();
    for days_ago in [2, 3] {
        let spec = complete(MeetingSpec {
            meeting_id: Some(85_392_858_403),
            start_time: Some((Utc::now() - TimeDelta::days(days_ago)).to_rfc3339()),
            ..MeetingSpec::default()
        });
        recurring.push(pipeline.create(&spec).await);
    }
    let oneshot = Oneshot::connect(&pipeline.settings)
        .await
        .expect("connected");
    let reconciler = &oneshot.reconciler;
    let acme_account = reconciler.account("acme").expect("acme");
    let today = Utc::now().date_naive();
    let dry = reconciler
        .pass(
            acme_account,
            today - TimeDelta::days(7),
            today,
            Handover::DryRun,
            None,
        )
        .await
        .expect("dry run");
    let files: usize = [&one]
        .into_iter()
        .chain(&recurring)
        .map(|created| created.files.len())
        .sum();
    assert_eq!(
        (dry.listed, dry.missing, dry.files),
        (3, 3, files),
        "{dry:?}"
    );
    let plan = topology(&pipeline.settings).stage_queue(StageName::Plan);
    assert_eq!(queue_length(&plan).await, 0, "a dry run sends nothing");

    let by_uuid = reconciler
        .import(acme_account, &one.uuid, false)
        .await
        .expect("imported");
    assert_eq!(by_uuid.handed_over, 1);
    let by_id = reconciler
        .import(acme_account, "85392858403", false)
        .await
        .expect("imported");
    assert_eq!(by_id.handed_over, 2, "every past instance: {by_id:?}");
    assert!(
        eventually(WAIT, || async { queue_length(&plan).await == 3 }).await,
        "three meetings handed over"
    );
    assert!(
        reconciler
            .import(acme_account, "no-such-meeting==", false)
            .await
            .is_err()
    );
    assert!(relay_reconcile::Reconciler::check_range(today, today - TimeDelta::days(1)).is_err());
    assert!(reconciler.account("initech").is_err());
}

#[tokio::test]
async fn an_account_with_revoked_credentials_is_reported_and_the_others_go_on() {
    let pipeline = TestPipeline::start(|_| {}).await;
    let created = pipeline.create(&complete(MeetingSpec::default())).await;
    let mut settings = pipeline.settings.clone();
    settings.accounts[1].client_secret = secrecy::SecretString::from("revoked");
    let oneshot = Oneshot::connect(&settings).await.expect("connected");
    let summaries = oneshot.reconciler.once().await;
    let globex = summaries
        .iter()
        .find(|summary| summary.account == "globex")
        .expect("globex");
    assert!(
        globex
            .error
            .as_deref()
            .is_some_and(|error| error.contains("credentials")),
        "{globex:?}"
    );
    assert_eq!(acme(&summaries).handed_over, 1);
    pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
}

#[tokio::test]
async fn an_account_switched_off_is_left_alone_and_caught_up_once_switched_on() {
    let pipeline = TestPipeline::start(|_| {}).await;
    pipeline.create(&complete(MeetingSpec::default())).await;
    let mut off = pipeline.settings.clone();
    off.accounts[0].enabled = false;
    let while_off = Oneshot::connect(&off)
        .await
        .expect("connected")
        .reconciler
        .once()
        .await;
    assert!(
        while_off.iter().all(|summary| summary.account != "acme"),
        "{while_off:?}"
    );
    let switched_on = reconcile_once(&pipeline).await;
    assert_eq!(acme(&switched_on).missing, 1, "{switched_on:?}");
}
