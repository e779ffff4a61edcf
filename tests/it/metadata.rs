//! Richer metadata in `meeting.json`, each kind behind its own scope: what the token allows is
//! fetched from the simulated Zoom; what it does not is left out with its reason, and the
//! recording lands all the same.

use relay_pipeline::settings::Metadata;
use zoom_sim::{ApiFaults, MeetingSpec};

use crate::helpers::sim_requests;
use crate::pipeline::{TestPipeline, assert_delivered, small};

/// A pipeline whose `acme` account asks for every kind, with tokens carrying `scopes`.
async fn pipeline_with_scopes(scopes: &str) -> TestPipeline {
    let pipeline = TestPipeline::start(|settings| {
        settings.accounts[0].metadata = vec![
            Metadata::Participants,
            Metadata::Instances,
            Metadata::Summary,
            Metadata::Qa,
        ];
    })
    .await;
    let response = pipeline
        .http
        .post(format!("{}/_sim/faults", pipeline.sim))
        .json(&ApiFaults {
            token_scopes: Some(scopes.into()),
            // Tokens issued before now carried other scopes.
            revoke_tokens: true,
            ..ApiFaults::default()
        })
        .send()
        .await
        .expect("faults set");
    assert_eq!(response.status(), 204);
    pipeline
}

#[tokio::test]
async fn a_missing_scope_leaves_its_metadata_out_with_the_reason_and_the_meeting_lands() {
    let pipeline =
        pipeline_with_scopes("recording:read:admin user:read:admin meeting:read:admin").await;
    let created = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_delivered(&pipeline, &manifest, &created);

    let metadata = manifest.metadata.expect("metadata enabled");
    let participants = metadata
        .participants
        .expect("meeting:read:admin is granted");
    assert_eq!(participants.len(), 3);
    assert!(
        participants
            .iter()
            .any(|p| p.user_email.as_deref() == Some("ada@example.com"))
    );
    let instances = metadata.instances.expect("past instances");
    assert!(
        instances.iter().any(|i| i.uuid == created.uuid),
        "{instances:?}"
    );
    assert_eq!(metadata.summary, None, "no summary scope");
    assert_eq!(metadata.qa, None, "Q&A is a webinar's");
    assert_eq!(metadata.unavailable.len(), 1, "{:?}", metadata.unavailable);
    assert_eq!(metadata.unavailable[0].metadata, "summary");
    assert!(
        metadata.unavailable[0]
            .reason
            .contains("meeting_summary:read:admin"),
        "{:?}",
        metadata.unavailable
    );
    let asked = sim_requests(&pipeline.http, &pipeline.sim, "/v2/meetings/").await;
    assert!(
        !asked
            .iter()
            .any(|(path, _, _)| path.ends_with("/meeting_summary")),
        "what the token cannot have is not asked for: {asked:?}"
    );
}

#[tokio::test]
async fn a_webinar_gets_attendees_panelists_qa_and_summary_when_every_scope_is_granted() {
    let pipeline = pipeline_with_scopes(
        "recording:read:admin user:read:admin webinar:read:admin meeting_summary:read:admin",
    )
    .await;
    let created = pipeline
        .create(&small(MeetingSpec {
            webinar: true,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&created.recording_completed).await;
    let manifest = pipeline
        .wait_for_manifest(&created.uuid, |m| m.files().count() == created.files.len())
        .await;
    assert_eq!(manifest.kind, "webinar");
    let metadata = manifest.metadata.expect("metadata enabled");
    assert_eq!(metadata.participants.map(|p| p.len()), Some(3));
    assert_eq!(
        metadata
            .panelists
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.email.as_deref()),
        Some("panelist@example.com")
    );
    let qa = metadata.qa.expect("webinar:read:admin grants Q&A");
    assert_eq!(
        qa[0].question_details[0].question.as_deref(),
        Some("Will the slides be shared?")
    );
    let summary = metadata.summary.expect("summary scope granted");
    assert_eq!(summary.next_steps.len(), 2);
    assert_eq!(
        metadata.instances, None,
        "instances need meeting:read:admin"
    );
    assert_eq!(
        metadata
            .unavailable
            .iter()
            .map(|u| u.metadata.as_str())
            .collect::<Vec<_>>(),
        vec!["instances"]
    );
}

#[tokio::test]
async fn alternative_hosts_become_co_owners_through_the_owner_rule_where_the_scope_allows() {
    let pipeline = TestPipeline::start(|settings| {
        let acme = &mut settings.accounts[0];
        acme.metadata = vec![Metadata::CoOwners];
        acme.owner = relay_pipeline::owner::OwnerSettings {
            rule: relay_pipeline::owner::OwnerRule::Rewrite,
            domains: [("example.com".into(), "corp.example.org".into())].into(),
            ..Default::default()
        };
    })
    .await;
    let response = pipeline
        .http
        .post(format!("{}/_sim/faults", pipeline.sim))
        .json(&ApiFaults {
            // Meetings' settings may be read, webinars' not.
            token_scopes: Some("recording:read:admin user:read:admin meeting:read:admin".into()),
            revoke_tokens: true,
            ..ApiFaults::default()
        })
        .send()
        .await
        .expect("faults set");
    assert_eq!(response.status(), 204);
    let meeting = pipeline
        .create(&small(MeetingSpec {
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    let webinar = pipeline
        .create(&small(MeetingSpec {
            webinar: true,
            transcript_later: false,
            ..MeetingSpec::default()
        }))
        .await;
    pipeline.send(&meeting.recording_completed).await;
    pipeline.send(&webinar.recording_completed).await;
    let landed = pipeline
        .wait_for_manifest(&meeting.uuid, |m| m.files().count() == meeting.files.len())
        .await;
    let metadata = landed.metadata.expect("metadata enabled");
    assert_eq!(
        metadata.co_owners,
        Some(vec![
            "alt-host@corp.example.org".to_owned(),
            "second.host@corp.example.org".to_owned()
        ])
    );
    let webinar_landed = pipeline
        .wait_for_manifest(&webinar.uuid, |m| m.files().count() == webinar.files.len())
        .await;
    let metadata = webinar_landed.metadata.expect("metadata enabled");
    assert_eq!(metadata.co_owners, None, "no webinar:read:admin");
    assert_eq!(metadata.unavailable.len(), 1);
    assert_eq!(metadata.unavailable[0].metadata, "co_owners");
    assert!(
        metadata.unavailable[0]
            .reason
            .contains("webinar:read:admin"),
        "{:?}",
        metadata.unavailable
    );
}
