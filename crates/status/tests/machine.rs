//! The state machine and the fold, without a broker: transitions in, views out.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use relay_core::binding::{Binding, Origin};
use relay_core::status::{
    AccountReport, Authorization, RateLimitReport, State, StatusMessage, Transition,
};
use relay_status::fold::{AccountConfig, ArchivedEvent, Filter, FoldSettings, View};
use serde_json::json;

const UUID: &str = "aB+c/dEf==";

/// One start for every step of a test run: steps are seconds after it.
fn t0() -> DateTime<Utc> {
    static START: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *START.get_or_init(|| Utc::now() - TimeDelta::hours(1))
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(seconds)
}

fn binding() -> Binding {
    Binding::new("acme", "acme-id", Origin::Webhook)
}

fn step(seconds: i64, state: State, stage: &str) -> Transition {
    let mut transition = Transition::new(&binding(), UUID, state, stage);
    transition.at = at(seconds);
    transition
}

fn planned(seconds: i64, files: &[(&str, &str)]) -> Transition {
    step(seconds, State::Planned, "plan").detail(json!({
        "event": "recording.completed",
        "topic": "Weekly sync",
        "host_email": "host@example.com",
        "kind": "meeting",
        "auto_delete_date": (Utc::now() + TimeDelta::days(20)).format("%Y-%m-%d").to_string(),
        "files": files.len(),
        "processing": 0,
        "wanted": files.iter().map(|(id, kind)| json!({"file_id": id, "file_type": kind})).collect::<Vec<_>>(),
    }))
}

fn staged(seconds: i64, file: &str) -> Transition {
    step(seconds, State::Staged, "download")
        .file(file)
        .detail(json!({ "size": 1000 }))
}

fn failed(seconds: i64, stage: &str, file: Option<&str>, code: &str) -> Transition {
    let mut transition = step(seconds, State::Failed, stage);
    transition.file_id = file.map(str::to_owned);
    transition.code = Some(code.into());
    transition.reason = Some("Zoom served an HTML page instead of the file (HTTP 200)".into());
    transition.attempt = Some(1);
    transition
}

fn uploaded(seconds: i64, missing: u64) -> Transition {
    step(seconds, State::Uploaded, "upload").detail(json!({
        "files": 2, "missing": missing, "bytes": 2000,
        "manifest": "host@example.com/2026/01/01/Weekly-x/meeting.json",
        "destination": "file:///srv/recordings/acme",
    }))
}

fn received(seconds: i64) -> ArchivedEvent {
    ArchivedEvent {
        account: "acme".into(),
        account_id: "acme-id".into(),
        origin: Some("webhook".into()),
        event: "recording.completed".into(),
        received_at: at(seconds),
        meeting_uuid: UUID.into(),
        description: json!({ "topic": "Weekly sync", "host_email": "host@example.com" }),
    }
}

fn view() -> View {
    View::new(FoldSettings {
        accounts: vec![AccountConfig {
            name: "acme".into(),
            account_id: "acme-id".into(),
            cleanup_grace: None,
        }],
        ..FoldSettings::default()
    })
}

fn fold(view: &mut View, transitions: &[Transition]) {
    for transition in transitions {
        view.apply(StatusMessage::Transition(transition.clone()));
    }
}

fn state(view: &View) -> String {
    view.summary(view.find(UUID, None)[0]).state
}

fn detail(view: &View) -> relay_status::api::MeetingDetail {
    view.detail(view.find(UUID, None)[0])
}

fn pending(view: &View) -> Option<String> {
    view.summary(view.find(UUID, None)[0]).pending_at
}

#[test]
fn a_meeting_goes_through_every_step_and_its_history_lists_them_in_order() {
    let mut view = view();
    view.apply_archive(Some(0), received(0));
    assert_eq!(state(&view), "received");
    assert_eq!(pending(&view).as_deref(), Some("plan"));
    fold(&mut view, &[planned(1, &[("f1", "MP4"), ("f2", "M4A")])]);
    assert_eq!(pending(&view).as_deref(), Some("download"));
    fold(&mut view, &[staged(2, "f1")]);
    assert_eq!(
        pending(&view).as_deref(),
        Some("download"),
        "f2 still comes"
    );
    fold(&mut view, &[staged(3, "f2")]);
    assert_eq!(pending(&view).as_deref(), Some("assemble"));
    fold(&mut view, &[step(4, State::Assembled, "assemble")]);
    assert_eq!(pending(&view).as_deref(), Some("upload"));
    fold(&mut view, &[uploaded(5, 0)]);
    assert_eq!(
        pending(&view),
        None,
        "archived, and the account does not delete"
    );
    let detail = detail(&view);
    assert_eq!(detail.meeting.state, "uploaded");
    assert_eq!(detail.meeting.topic.as_deref(), Some("Weekly sync"));
    let states: Vec<&str> = detail.history.iter().map(|h| h.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "received",
            "planned",
            "staged",
            "staged",
            "assembled",
            "uploaded"
        ]
    );
    let stages: Vec<&str> = detail.history.iter().map(|h| h.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "ingress", "plan", "download", "download", "assemble", "upload"
        ]
    );
    assert!(
        detail.history[1].process.is_some(),
        "each line names its process"
    );
    assert_eq!(
        detail.landed.and_then(|landed| landed.manifest).as_deref(),
        Some("host@example.com/2026/01/01/Weekly-x/meeting.json")
    );
    assert_eq!(
        detail.meeting.summary,
        "Archived and verified at the destination."
    );
}

#[test]
fn a_late_or_repeated_event_never_moves_a_meeting_back() {
    let mut view = view();
    view.apply_archive(Some(0), received(0));
    fold(
        &mut view,
        &[
            planned(1, &[("f1", "MP4")]),
            staged(2, "f1"),
            step(3, State::Assembled, "assemble"),
            uploaded(4, 0),
            step(5, State::Deleted, "cleanup").detail(
                json!({ "action": "trash", "deleted": ["f1"], "kept": [], "listed": true }),
            ),
        ],
    );
    assert_eq!(state(&view), "deleted");
    // Zoom sends recording.completed again: received, planned, assembled, uploaded again.
    view.apply_archive(Some(1), received(10));
    fold(
        &mut view,
        &[
            planned(11, &[("f1", "MP4")]),
            step(12, State::Assembled, "assemble"),
            uploaded(13, 0),
        ],
    );
    assert_eq!(state(&view), "deleted", "never back");
    assert_eq!(pending(&view), None);
    assert_eq!(
        detail(&view).history.len(),
        10,
        "but every line is remembered"
    );
}

#[test]
fn a_transition_arriving_before_its_predecessor_does_not_move_the_state_back() {
    let mut view = view();
    // plan records `planned` after it handed the files on: a fast download can come first.
    fold(&mut view, &[staged(2, "f1"), planned(1, &[("f1", "MP4")])]);
    assert_eq!(state(&view), "staged");
    let history: Vec<String> = detail(&view).history.into_iter().map(|h| h.state).collect();
    assert_eq!(history, ["planned", "staged"], "history in time order");
}

#[test]
fn a_file_served_as_html_fails_the_meeting_though_the_rest_is_archived_until_a_replay_fetches_it() {
    let mut view = view();
    fold(
        &mut view,
        &[
            planned(1, &[("f1", "MP4"), ("f2", "TRANSCRIPT")]),
            staged(2, "f2"),
            failed(3, "download", Some("f1"), "html_instead_of_file"),
            step(4, State::Assembled, "assemble"),
            uploaded(5, 1),
        ],
    );
    let detail = detail(&view);
    assert_eq!(detail.meeting.state, "failed");
    assert_eq!(detail.meeting.reached.as_deref(), Some("uploaded"));
    assert_eq!(detail.meeting.file_counts.failed, 1);
    assert_eq!(detail.meeting.file_counts.staged, 1);
    let failure = detail.meeting.failure.clone().expect("failure");
    assert_eq!(failure.code, "html_instead_of_file");
    assert_eq!(failure.stage, "download");
    assert_eq!(failure.file_type.as_deref(), Some("MP4"));
    assert!(failure.meaning.contains("HTML page"), "{}", failure.meaning);
    assert!(!failure.retryable);
    assert_eq!(
        failure.replay,
        "zoom-relay replay --from-dlq download --meeting aB+c/dEf== --account acme"
    );
    assert!(
        detail.meeting.summary.contains("the rest is archived"),
        "{}",
        detail.meeting.summary
    );
    assert_eq!(detail.landed.map(|landed| landed.missing), Some(1));
    assert_eq!(
        pending(&view),
        None,
        "a failure waits for a person, not a stage"
    );
    // A replay fetches it: resolved.
    fold(
        &mut view,
        &[
            staged(10, "f1"),
            step(11, State::Assembled, "assemble"),
            uploaded(12, 0),
        ],
    );
    assert_eq!(state(&view), "uploaded");
}

#[test]
fn a_stage_failure_is_resolved_only_by_a_later_success_of_that_stage() {
    let mut view = view();
    fold(
        &mut view,
        &[
            planned(1, &[("f1", "MP4")]),
            staged(2, "f1"),
            step(3, State::Assembled, "assemble"),
            failed(4, "upload", None, "storage_failed"),
        ],
    );
    assert_eq!(state(&view), "failed");
    fold(&mut view, &[planned(5, &[("f1", "MP4")])]);
    assert_eq!(
        state(&view),
        "failed",
        "plan's success says nothing of upload"
    );
    fold(&mut view, &[uploaded(6, 0)]);
    assert_eq!(state(&view), "uploaded");
}

#[test]
fn a_failure_of_a_file_already_staged_is_only_history() {
    let mut view = view();
    fold(
        &mut view,
        &[
            planned(1, &[("f1", "MP4")]),
            staged(2, "f1"),
            failed(3, "download", Some("f1"), "download_failed"),
        ],
    );
    assert_eq!(state(&view), "staged");
    assert_eq!(detail(&view).history.len(), 3);
}

#[test]
fn a_skipped_meeting_says_why_and_a_later_archive_wins_but_a_later_skip_does_not() {
    let mut view = view();
    view.apply_archive(Some(0), received(0));
    fold(
        &mut view,
        &[step(1, State::Skipped, "plan")
            .detail(json!({ "reason": "webinars are off for this account" }))],
    );
    let summary = view.summary(view.find(UUID, None)[0]);
    assert_eq!(summary.state, "skipped");
    assert_eq!(
        summary.skipped_reason.as_deref(),
        Some("webinars are off for this account")
    );
    assert_eq!(summary.pending_at, None);
    fold(&mut view, &[planned(2, &[("f1", "MP4")]), staged(3, "f1")]);
    assert_eq!(state(&view), "staged", "archived after all (a replay)");
    fold(
        &mut view,
        &[step(4, State::Skipped, "plan").detail(json!({ "reason": "host filtered out" }))],
    );
    assert_eq!(state(&view), "staged", "a skip never undoes progress");
}

#[test]
fn zoom_updates_are_recorded_without_moving_the_state() {
    let mut view = view();
    fold(
        &mut view,
        &[
            planned(1, &[("f1", "MP4")]),
            staged(2, "f1"),
            step(3, State::Assembled, "assemble"),
            uploaded(4, 0),
            step(5, State::Updated, "plan").detail(json!({ "event": "recording.renamed" })),
        ],
    );
    let detail = detail(&view);
    assert_eq!(detail.meeting.state, "uploaded");
    assert_eq!(detail.updates, ["recording.renamed"]);
    let mut only_updated = View::new(FoldSettings::default());
    only_updated.apply(StatusMessage::Transition(
        step(1, State::Updated, "plan").detail(json!({ "event": "recording.trashed" })),
    ));
    assert_eq!(
        only_updated.summary(only_updated.find(UUID, None)[0]).state,
        "updated"
    );
}

#[test]
fn waiting_for_zoom_to_process_is_pending_at_plan() {
    let mut view = view();
    let mut waiting = planned(1, &[("f1", "MP4")]);
    waiting.detail["processing"] = json!(2);
    fold(&mut view, &[waiting, staged(2, "f1")]);
    let summary = view.summary(view.find(UUID, None)[0]);
    assert_eq!(summary.pending_at.as_deref(), Some("plan"));
    assert!(
        summary.summary.contains("processing 2 files"),
        "{}",
        summary.summary
    );
}

#[test]
fn an_uploaded_meeting_of_a_deleting_account_waits_at_cleanup_after_its_grace_period() {
    for (grace, expected) in [
        (Duration::ZERO, Some("cleanup")),
        (Duration::from_secs(86_400), None),
    ] {
        let mut view = View::new(FoldSettings {
            accounts: vec![AccountConfig {
                name: "acme".into(),
                account_id: "acme-id".into(),
                cleanup_grace: Some(grace),
            }],
            ..FoldSettings::default()
        });
        fold(
            &mut view,
            &[
                planned(1, &[("f1", "MP4")]),
                staged(2, "f1"),
                step(3, State::Assembled, "assemble"),
                uploaded(4, 0),
            ],
        );
        assert_eq!(pending(&view).as_deref(), expected, "grace {grace:?}");
        // Cleanup kept everything (a replay without --allow-delete): done all the same.
        fold(
            &mut view,
            &[step(5, State::Uploaded, "cleanup")
                .detail(json!({ "deleted": [], "kept": ["f1: a replay"], "listed": true }))],
        );
        assert_eq!(pending(&view), None);
        assert_eq!(state(&view), "uploaded");
    }
}

#[test]
fn the_two_streams_interleaved_either_way_give_the_same_view() {
    let transitions = [
        planned(1, &[("f1", "MP4")]),
        staged(2, "f1"),
        step(3, State::Assembled, "assemble"),
        uploaded(4, 0),
    ];
    let event = received(0);
    let mut archive_first = view();
    archive_first.apply_archive(Some(0), event.clone());
    fold(&mut archive_first, &transitions);
    let mut archive_last = view();
    fold(&mut archive_last, &transitions);
    archive_last.apply_archive(Some(0), event);
    assert_eq!(detail(&archive_first), detail(&archive_last));
}

#[test]
fn a_message_delivered_again_after_a_resubscription_is_folded_once() {
    let mut view = view();
    let body = StatusMessage::Transition(planned(1, &[("f1", "MP4")])).to_json();
    view.apply_status(Some(7), &body);
    view.apply_status(Some(7), &body);
    view.apply_status(Some(6), &body);
    assert_eq!(detail(&view).history.len(), 1);
    assert_eq!(view.status_offset(), Some(7));
    view.apply_status(Some(8), b"{\"kind\":\"from_a_newer_version\"}");
    assert_eq!(
        view.status_offset(),
        Some(8),
        "an unknown kind is skipped, not stuck on"
    );
}

#[test]
fn search_filters_by_account_state_text_and_time() {
    let mut view = view();
    fold(&mut view, &[planned(1, &[("f1", "MP4")])]);
    let mut other = Transition::new(&binding(), "zzz", State::Skipped, "plan")
        .detail(json!({ "reason": "host filtered out", "topic": "Board <b>meeting</b>" }));
    other.at = at(2);
    fold(&mut view, &[other]);
    let list = |filter: Filter| {
        view.list(&Filter {
            limit: 10,
            ..filter
        })
    };
    assert_eq!(list(Filter::default()).0, 2);
    assert_eq!(
        list(Filter::default()).1[0].meeting_uuid,
        "zzz",
        "most recent first"
    );
    let by_topic = list(Filter {
        query: Some("BOARD".into()),
        ..Filter::default()
    });
    assert_eq!(by_topic.1[0].meeting_uuid, "zzz");
    let by_host = list(Filter {
        query: Some("host@EXAMPLE".into()),
        ..Filter::default()
    });
    assert_eq!(by_host.1[0].meeting_uuid, UUID);
    let by_uuid = list(Filter {
        query: Some("c/def".into()),
        ..Filter::default()
    });
    assert_eq!(by_uuid.0, 1);
    let skipped = list(Filter {
        state: Some(State::Skipped),
        ..Filter::default()
    });
    assert_eq!(skipped.0, 1);
    let recent = list(Filter {
        since: Some(at(2)),
        ..Filter::default()
    });
    assert_eq!(recent.0, 1);
    let elsewhere = list(Filter {
        account: Some("globex".into()),
        ..Filter::default()
    });
    assert_eq!(elsewhere.0, 0);
}

fn report(
    process: &str,
    minutes_ago: i64,
    authorization: Authorization,
    rate_limited: u64,
) -> StatusMessage {
    StatusMessage::Account(AccountReport {
        at: Utc::now() - TimeDelta::minutes(minutes_ago),
        account: "acme".into(),
        account_id: "acme-id".into(),
        process: process.into(),
        since: Utc::now() - TimeDelta::hours(2),
        authorization,
        rate_limits: RateLimitReport {
            rate_limited,
            last_rate_limited_at: None,
            daily_used: 5,
            daily_cap: 100,
        },
    })
}

#[test]
fn an_account_shows_the_latest_authorization_outcome_and_live_rate_limits() {
    let mut view = view();
    let refused = Authorization {
        last_error: Some(
            "Zoom refused the credentials (HTTP 400): Invalid client_id or client_secret".into(),
        ),
        last_error_at: Some(Utc::now() - TimeDelta::minutes(1)),
        ..Authorization::default()
    };
    view.apply(report("a:1", 1, refused.clone(), 3));
    view.apply(report("gone:2", 120, Authorization::default(), 50));
    let accounts = view.accounts(Utc::now());
    let acme = &accounts[0];
    assert_eq!(acme.authorization.state, "failing");
    assert!(
        acme.authorization
            .error
            .as_deref()
            .is_some_and(|error| error.contains("Invalid client_id")),
        "{:?}",
        acme.authorization
    );
    assert_eq!(acme.rate_limits.rate_limited, 3, "only processes alive now");
    assert_eq!(acme.rate_limits.daily_cap, 100);
    // Fixed: a later token wins over the older refusal.
    view.apply(report(
        "a:1",
        0,
        Authorization {
            last_token_at: Some(Utc::now()),
            missing_scopes: vec!["recording:write:admin".into()],
            ..refused
        },
        3,
    ));
    let accounts = view.accounts(Utc::now());
    assert_eq!(accounts[0].authorization.state, "ok");
    assert_eq!(
        accounts[0].authorization.missing_scopes,
        ["recording:write:admin"]
    );
}

#[test]
fn recordings_near_zooms_auto_delete_date_and_not_archived_are_at_risk() {
    let mut view = view();
    let mut soon = planned(1, &[("f1", "MP4")]);
    soon.detail["auto_delete_date"] = json!(
        (Utc::now() + TimeDelta::days(1))
            .format("%Y-%m-%d")
            .to_string()
    );
    fold(&mut view, &[soon]);
    assert_eq!(view.accounts(Utc::now())[0].auto_delete_at_risk.len(), 1);
    fold(
        &mut view,
        &[
            staged(2, "f1"),
            step(3, State::Assembled, "assemble"),
            uploaded(4, 0),
        ],
    );
    assert!(view.accounts(Utc::now())[0].auto_delete_at_risk.is_empty());
}

#[test]
fn past_max_meetings_those_updated_longest_ago_are_forgotten() {
    let mut view = View::new(FoldSettings {
        max_meetings: 100,
        ..FoldSettings::default()
    });
    for index in 0..250 {
        let mut transition =
            Transition::new(&binding(), &format!("m{index:03}"), State::Planned, "plan");
        transition.at = at(index);
        view.apply(StatusMessage::Transition(transition));
    }
    assert!(view.meeting_count() <= 100);
    assert!(!view.find("m249", None).is_empty(), "the newest stay");
    assert!(view.find("m000", None).is_empty(), "the oldest go");
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `cargo test -p relay-status --release --test machine -- --ignored --nocapture fold_speed`
#[test]
#[ignore = "a measurement, not a check"]
fn fold_speed() {
    let meetings = 100_000;
    let before = resident_kib();
    let mut view = View::new(FoldSettings::default());
    let mut folded = 0usize;
    let mut spent = Duration::ZERO;
    for chunk in 0..meetings / 1_000 {
        // Seven transitions a meeting (plan, four files, assemble, upload), as JSON bodies.
        let mut bodies = Vec::new();
        for index in chunk * 1_000..(chunk + 1) * 1_000 {
            let uuid = format!("{index:08}AbCdEf+/Gh==");
            let mut make = |state: State, stage: &str, file: Option<String>, detail| {
                let mut transition =
                    Transition::new(&binding(), &uuid, state, stage).detail(detail);
                transition.file_id = file;
                bodies.push(StatusMessage::Transition(transition).to_json());
            };
            make(
                State::Planned,
                "plan",
                None,
                json!({
                    "topic": "Weekly sync of the team", "host_email": "host@example.com",
                    "wanted": (0..4).map(|f| json!({"file_id": format!("file-{f}"), "file_type": "MP4"})).collect::<Vec<_>>(),
                }),
            );
            for file in 0..4 {
                make(
                    State::Staged,
                    "download",
                    Some(format!("file-{file}")),
                    json!({"size": 1000}),
                );
            }
            make(State::Assembled, "assemble", None, json!({"files": 4}));
            make(
                State::Uploaded,
                "upload",
                None,
                json!({"files": 4, "manifest": "a/b/meeting.json"}),
            );
        }
        let started = std::time::Instant::now();
        for body in &bodies {
            view.apply_status(Some(folded as i64), body);
            folded += 1;
        }
        spent += started.elapsed();
    }
    println!(
        "folded {folded} transitions of {meetings} meetings in {spent:?} ({:.0} per second); \
         resident memory grew by {} MiB ({} bytes a meeting)",
        folded as f64 / spent.as_secs_f64(),
        (resident_kib() - before) / 1024,
        (resident_kib() - before) * 1024 / meetings as u64
    );
    let started = std::time::Instant::now();
    let listed = view.list(&Filter {
        limit: 100,
        query: Some("weekly".into()),
        ..Filter::default()
    });
    println!("searched {} meetings in {:?}", listed.0, started.elapsed());
    let started = std::time::Instant::now();
    let waiting = view.pending_by_stage();
    println!(
        "pending per stage over every meeting in {:?} ({waiting:?})",
        started.elapsed()
    );
}
