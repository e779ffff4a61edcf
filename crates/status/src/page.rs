//! The web page: server-rendered HTML, no script, every value escaped (topics, host emails and
//! reasons are whatever Zoom or a sender put there). User text is also wrapped in `<bdi>`, so a
//! right-to-left override in a topic cannot reorder the row around it.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use relay_core::status::State;

use crate::api::{
    AccountView, FailureView, MeetingDetail, MeetingSummary, MeetingsPage, QueuesPage, Summary,
};
use crate::words::{age, ago};

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// User text, escaped and isolated.
fn user(text: &str) -> String {
    format!("<bdi>{}</bdi>", esc(text))
}

fn opt(text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => user(text),
        _ => "<span class=muted>—</span>".into(),
    }
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// The detail page's address: the uuid percent-encoded (uuids hold `/` and `+`).
pub fn meeting_href(uuid: &str, account: &str) -> String {
    format!("/meetings/{}?account={}", encode(uuid), encode(account))
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        Some(at) => format!(
            "<span title=\"{}\">{}</span>",
            esc(&time(at)),
            esc(&ago(at, now))
        ),
        None => "<span class=muted>never</span>".into(),
    }
}

fn badge(state: &str) -> String {
    let class = match State::parse(state) {
        Some(State::Failed) => "bad",
        Some(State::Uploaded | State::Deleted) => "good",
        Some(State::Skipped | State::Updated) => "quiet",
        _ => "busy",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(state))
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

const STYLE: &str = r#"
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:0;color:#1d2329;background:#f5f6f8}
header{background:#1d2329;color:#fff;padding:10px 24px;display:flex;justify-content:space-between;align-items:baseline;gap:16px}
header a{color:#fff;text-decoration:none}
header .when{color:#aeb6bf;font-size:12px}
main{max-width:1320px;margin:0 auto;padding:12px 24px 40px}
h1{font-size:17px;margin:0;font-weight:600}
h2{font-size:15px;margin:22px 0 8px}
a{color:#0b57d0}
.headline{font-size:16px;padding:10px 14px;border-radius:6px;margin:8px 0;border:1px solid}
.headline.good{background:#e8f5e9;border-color:#a5d6a7}
.headline.warn{background:#fff4e5;border-color:#ffc77d}
.attention{margin:6px 0 0 0;padding-left:20px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e6}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eceff3;vertical-align:top}
th{background:#eef1f4;font-weight:600;font-size:12px;color:#4a5561}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fff8f8}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.bad{background:#fde2e1;color:#a50e0e}.badge.good{background:#e3f2e5;color:#1b5e20}
.badge.quiet{background:#eceff1;color:#455a64}.badge.busy{background:#e3eefd;color:#0b4aa2}
.ok{color:#1b5e20}.bad{color:#a50e0e}.muted{color:#6b7785}
.failure{border:1px solid #f2b8b5;background:#fff7f6;border-radius:6px;padding:10px 14px;margin:10px 0}
.failure h3{margin:0 0 6px;font-size:14px}
.failure dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}
.failure dt{color:#4a5561}.failure dd{margin:0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;background:#fff;border:1px solid #dde1e6;padding:10px 14px;margin:0}
dl.facts dt{color:#4a5561}dl.facts dd{margin:0}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f4;padding:2px 5px;border-radius:3px;overflow-wrap:anywhere}
form.search{display:flex;gap:8px;flex-wrap:wrap;margin:0 0 8px}
form.search input[type=search]{flex:1;min-width:240px;padding:5px 8px}
form.search select,form.search button{padding:5px 8px}
.small{font-size:12px}
footer{margin-top:28px;font-size:12px;color:#6b7785}
"#;

fn document(title: &str, now: DateTime<Utc>, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <meta name=referrer content=no-referrer>\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <header><h1><a href=\"/\">zoom-relay status</a></h1>\
         <span class=when>as of {now}</span></header><main>{body}\
         <footer>The same facts as JSON: <a href=\"/api/summary\">/api/summary</a> · \
         <a href=\"/api/meetings\">/api/meetings</a> · <a href=\"/api/accounts\">/api/accounts</a> · \
         <a href=\"/api/queues\">/api/queues</a> (docs/status.md)</footer></main></body></html>\n",
        title = esc(title),
        now = esc(&time(now)),
    )
}

/// The search form's current values.
#[derive(Debug, Default, Clone)]
pub struct Search {
    pub query: String,
    pub account: String,
    pub state: String,
}

/// `/`: accounts at the top, the pipeline, then recent meetings and a search.
pub fn index(
    summary: &Summary,
    meetings: &MeetingsPage,
    search: &Search,
    now: DateTime<Utc>,
) -> String {
    let mut body = String::new();
    let class = if summary.everything_archived || summary.attention.is_empty() {
        "good"
    } else {
        "warn"
    };
    let _ = write!(
        body,
        "<div class=\"headline {class}\" id=headline>{}",
        esc(&summary.headline)
    );
    let rest: Vec<&String> = summary
        .attention
        .iter()
        .filter(|line| **line != summary.headline)
        .collect();
    if !rest.is_empty() {
        body.push_str("<ul class=attention>");
        for line in rest {
            let _ = write!(body, "<li>{}</li>", esc(line));
        }
        body.push_str("</ul>");
    }
    body.push_str("</div>");
    accounts_table(&mut body, &summary.accounts, now);
    queues_table(&mut body, &summary.queues);
    meetings_section(&mut body, summary, meetings, search, now);
    document("zoom-relay status", now, &body)
}

fn accounts_table(body: &mut String, accounts: &[AccountView], now: DateTime<Utc>) {
    body.push_str(
        "<h2>Accounts</h2><table id=accounts><thead><tr><th>Account</th><th>Zoom authorization</th>\
         <th>Last webhook</th><th>Last archived</th><th>Reconciliation</th><th>Zoom rate limits</th>\
         <th>Meetings</th><th>Near Zoom's auto-delete</th></tr></thead><tbody>",
    );
    if accounts.is_empty() {
        body.push_str("<tr><td colspan=8 class=muted>No account configured or seen.</td></tr>");
    }
    for account in accounts {
        let authorization = &account.authorization;
        let mut auth = match authorization.state.as_str() {
            "ok" => format!(
                "<span class=ok>token obtained</span> {}",
                when(authorization.last_token_at, now)
            ),
            "failing" => format!(
                "<span class=bad>refused</span> {}: {}",
                when(authorization.error_at, now),
                user(authorization.error.as_deref().unwrap_or("no reason given"))
            ),
            _ => "<span class=muted>no report yet</span>".into(),
        };
        if !authorization.missing_scopes.is_empty() {
            let _ = write!(
                auth,
                "<br><span class=bad>missing scopes:</span> {}",
                esc(&authorization.missing_scopes.join(", "))
            );
        }
        let archived = match &account.last_archived {
            Some(archived) => format!(
                "{}<br><a class=small href=\"{}\">{}</a>",
                when(Some(archived.at), now),
                esc(&meeting_href(&archived.meeting_uuid, &account.account)),
                opt(archived.topic.as_deref().or(Some(&archived.meeting_uuid)))
            ),
            None => when(None, now),
        };
        let reconcile = match &account.reconcile {
            Some(reconcile) if reconcile.ok => format!(
                "<span class=ok>ok</span> {}{}",
                when(Some(reconcile.at), now),
                reconcile
                    .lag_seconds
                    .map(|lag| format!("<br><span class=small>lag {}</span>", esc(&age(lag))))
                    .unwrap_or_default()
            ),
            Some(reconcile) => format!(
                "<span class=bad>failed</span> {}: {}",
                when(Some(reconcile.at), now),
                user(reconcile.error.as_deref().unwrap_or("no reason given"))
            ),
            None => "<span class=muted>no pass reported</span>".into(),
        };
        let limits = &account.rate_limits;
        let rate = if limits.daily_cap == 0 && limits.rate_limited == 0 {
            "<span class=muted>—</span>".to_owned()
        } else {
            format!(
                "{} × 429{}<br><span class=small>daily cap {} of {}</span>",
                limits.rate_limited,
                limits
                    .last_rate_limited_at
                    .map(|at| format!(", last {}", when(Some(at), now)))
                    .unwrap_or_default(),
                limits.daily_used,
                limits.daily_cap
            )
        };
        let meetings = account
            .meetings
            .iter()
            .map(|(state, count)| format!("{count} {}", esc(state)))
            .collect::<Vec<_>>()
            .join(", ");
        let risk = if account.auto_delete_at_risk.is_empty() {
            "<span class=ok>none</span>".to_owned()
        } else {
            let mut list = format!(
                "<span class=bad>{} not archived</span><ul class=small>",
                account.auto_delete_at_risk.len()
            );
            for risky in account.auto_delete_at_risk.iter().take(5) {
                let _ = write!(
                    list,
                    "<li><a href=\"{}\">{}</a> ({})</li>",
                    esc(&meeting_href(&risky.meeting_uuid, &account.account)),
                    opt(risky.topic.as_deref().or(Some(&risky.meeting_uuid))),
                    esc(&risky.auto_delete_date)
                );
            }
            list.push_str("</ul>");
            list
        };
        let _ = write!(
            body,
            "<tr><td><b>{}</b>{}</td><td>{auth}</td><td>{}</td><td>{archived}</td>\
             <td>{reconcile}</td><td>{rate}</td><td>{}</td><td>{risk}</td></tr>",
            user(&account.account),
            if account.configured {
                String::new()
            } else {
                "<br><span class=\"small muted\">not in this configuration</span>".into()
            },
            {
                let webhook = when(account.last_webhook_at, now);
                match &account.websocket {
                    Some(socket) => format!(
                        "{webhook}<br><span class=small>socket: <span class={}>{}</span>{}</span>",
                        if socket.state == "connected" {
                            "ok"
                        } else {
                            "bad"
                        },
                        esc(&socket.state),
                        socket
                            .last_failure
                            .as_deref()
                            .filter(|_| socket.state != "connected")
                            .map(|why| format!(" ({})", esc(why)))
                            .unwrap_or_default()
                    ),
                    None => webhook,
                }
            },
            if meetings.is_empty() {
                "<span class=muted>none</span>".into()
            } else {
                meetings
            },
        );
    }
    body.push_str("</tbody></table>");
}

fn number(value: Option<u64>) -> String {
    value
        .map(|value| value.to_string())
        .unwrap_or_else(|| "<span class=muted>?</span>".into())
}

fn queues_table(body: &mut String, queues: &QueuesPage) {
    body.push_str("<h2>Pipeline</h2>");
    if let Some(error) = &queues.management.error {
        let _ = write!(
            body,
            "<p class=bad>RabbitMQ's management API did not answer: {}. Queue figures are from \
             the last look that worked, if any.</p>",
            esc(error)
        );
    }
    body.push_str(
        "<table id=queues><thead><tr><th>Stage</th><th class=num>Waiting</th>\
         <th class=num>In progress</th><th class=num>Consumers</th><th class=num>Retrying</th>\
         <th class=num>Dead letters</th><th class=num>Meetings waiting</th><th>Oldest waiting</th>\
         </tr></thead><tbody>",
    );
    for stage in &queues.stages {
        let oldest = match &stage.oldest_pending {
            Some(oldest) => format!(
                "{} <a class=small href=\"{}\">{}</a>",
                esc(&age(stage.oldest_pending_seconds.unwrap_or(0))),
                esc(&meeting_href(&oldest.meeting_uuid, &oldest.account)),
                user(&oldest.meeting_uuid)
            ),
            None => "<span class=muted>—</span>".into(),
        };
        let dead = match stage.dead_letters {
            Some(dead) if dead > 0 => format!("<span class=bad>{dead}</span>"),
            other => number(other),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{}</td><td class=num>{dead}</td><td class=num>{}</td><td>{oldest}</td></tr>",
            esc(&stage.stage),
            number(stage.ready),
            number(stage.unacked),
            number(stage.consumers),
            number(stage.retrying),
            stage.pending_meetings,
        );
    }
    body.push_str("</tbody></table>");
}

fn meetings_section(
    body: &mut String,
    summary: &Summary,
    meetings: &MeetingsPage,
    search: &Search,
    now: DateTime<Utc>,
) {
    body.push_str("<h2>Meetings</h2><form class=search method=get action=\"/\">");
    let _ = write!(
        body,
        "<input type=search name=q value=\"{}\" placeholder=\"uuid, topic or host email\" \
         aria-label=\"Search meetings\">",
        esc(&search.query)
    );
    body.push_str(
        "<select name=account aria-label=Account><option value=\"\">every account</option>",
    );
    for account in &summary.accounts {
        let selected = if account.account == search.account {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{selected}>{}</option>",
            esc(&account.account),
            esc(&account.account)
        );
    }
    body.push_str(
        "</select><select name=state aria-label=State><option value=\"\">every state</option>",
    );
    for state in State::ALL {
        let selected = if state.as_str() == search.state {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{selected}>{}</option>", esc(state.as_str()));
    }
    body.push_str("</select><button type=submit>Search</button></form>");
    let _ = write!(
        body,
        "<p class=\"small muted\">{} of {} meeting{} shown, the most recently updated first.</p>",
        meetings.meetings.len(),
        meetings.total,
        if meetings.total == 1 { "" } else { "s" }
    );
    body.push_str(
        "<table id=meetings><thead><tr><th>Updated</th><th>Account</th><th>Topic</th>\
         <th>Host</th><th>State</th><th class=num>Files</th><th>What happened</th></tr></thead><tbody>",
    );
    if meetings.meetings.is_empty() {
        body.push_str("<tr><td colspan=7 class=muted>No meeting matches.</td></tr>");
    }
    for meeting in &meetings.meetings {
        meeting_row(body, meeting, now);
    }
    body.push_str("</tbody></table>");
}

fn meeting_row(body: &mut String, meeting: &MeetingSummary, now: DateTime<Utc>) {
    let href = meeting_href(&meeting.meeting_uuid, &meeting.account);
    let title = meeting
        .topic
        .as_deref()
        .filter(|topic| !topic.is_empty())
        .unwrap_or("(no topic)");
    let counts = meeting.file_counts;
    let files = if counts.wanted == 0 {
        "<span class=muted>—</span>".to_owned()
    } else if counts.failed > 0 {
        format!(
            "{}/{} <span class=bad>({} failed)</span>",
            counts.staged, counts.wanted, counts.failed
        )
    } else {
        format!("{}/{}", counts.staged, counts.wanted)
    };
    let mut what = esc(&meeting.summary);
    if let Some(failure) = &meeting.failure {
        let _ = write!(
            what,
            "<br><span class=small><code>{}</code> {}</span>",
            esc(&failure.code),
            esc(&failure.meaning)
        );
    }
    let _ = write!(
        body,
        "<tr class=\"{}\"><td>{}</td><td>{}</td><td><a href=\"{}\">{}</a><br>\
         <code class=small>{}</code></td><td>{}</td><td>{}{}</td><td class=num>{files}</td><td>{what}</td></tr>",
        esc(&meeting.state),
        when(Some(meeting.updated_at), now),
        user(&meeting.account),
        esc(&href),
        user(title),
        esc(&meeting.meeting_uuid),
        opt(meeting.host_email.as_deref()),
        badge(&meeting.state),
        match (&meeting.reached, meeting.state.as_str()) {
            (Some(reached), "failed") =>
                format!("<br><span class=small>reached {}</span>", esc(reached)),
            _ => String::new(),
        },
    );
}

fn failure_box(body: &mut String, failure: &FailureView) {
    let file = match (&failure.file_id, &failure.file_type) {
        (Some(id), Some(kind)) => format!(" — file {} ({})", user(id), esc(kind)),
        (Some(id), None) => format!(" — file {}", user(id)),
        _ => String::new(),
    };
    let _ = write!(
        body,
        "<div class=failure><h3>Failed at {} with <code>{}</code>{file}</h3><dl>\
         <dt>What it means</dt><dd>{}</dd>\
         <dt>Reason</dt><dd>{}</dd>\
         <dt>Attempt</dt><dd>{} ({}), {}</dd>\
         <dt>What to do</dt><dd>{}</dd>\
         <dt>Retry it</dt><dd><code class=replay>{}</code></dd></dl></div>",
        esc(&failure.stage),
        esc(&failure.code),
        esc(&failure.meaning),
        user(&failure.reason),
        failure.attempt,
        if failure.retryable {
            "retried before giving up"
        } else {
            "not retried: permanent"
        },
        esc(&time(failure.at)),
        esc(&failure.advice),
        esc(&failure.replay),
    );
}

/// `/meetings/{uuid}`: one meeting, its failures, files and history.
pub fn meeting(detail: &MeetingDetail, now: DateTime<Utc>) -> String {
    let meeting = &detail.meeting;
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=small><a href=\"/\">← all meetings</a></p><h2>{}</h2>",
        user(meeting.topic.as_deref().unwrap_or("(no topic)"))
    );
    let _ = write!(
        body,
        "<p>{}{} — {}</p>",
        badge(&meeting.state),
        match &meeting.reached {
            Some(reached) if reached != &meeting.state =>
                format!(" <span class=small>reached <b>{}</b></span>", esc(reached)),
            _ => String::new(),
        },
        esc(&meeting.summary)
    );
    for failure in &detail.failures {
        failure_box(&mut body, failure);
    }
    body.push_str("<dl class=facts>");
    let fact = |body: &mut String, name: &str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{value}</dd>", esc(name));
    };
    fact(
        &mut body,
        "Meeting uuid",
        format!("<code>{}</code>", esc(&meeting.meeting_uuid)),
    );
    fact(&mut body, "Account", user(&meeting.account));
    fact(&mut body, "Host", opt(meeting.host_email.as_deref()));
    fact(&mut body, "Kind", opt(meeting.kind.as_deref()));
    fact(&mut body, "Started", opt(meeting.start_time.as_deref()));
    fact(
        &mut body,
        "Zoom deletes it on",
        opt(meeting.auto_delete_date.as_deref()),
    );
    if let Some(reason) = &meeting.skipped_reason {
        fact(&mut body, "Skipped because", user(reason));
    }
    if let Some(stage) = &meeting.pending_at {
        fact(&mut body, "Waiting at", esc(stage));
    }
    if let Some(landed) = &detail.landed {
        fact(
            &mut body,
            "Landed at",
            format!(
                "{} — manifest <code>{}</code><br>{} file(s), {}{}",
                opt(landed.destination.as_deref()),
                esc(landed.manifest.as_deref().unwrap_or("?")),
                landed.files,
                esc(&bytes(landed.bytes)),
                if landed.missing > 0 {
                    format!(
                        "; <span class=bad>{} missing</span> (listed in the manifest)",
                        landed.missing
                    )
                } else {
                    String::new()
                }
            ),
        );
    }
    if let Some(deletion) = &detail.deletion {
        let text = if deletion.gone {
            "Zoom no longer listed it: nothing left to delete".to_owned()
        } else {
            format!(
                "{} {} file(s); kept {}",
                deletion.action.as_deref().unwrap_or("deleted"),
                deletion.deleted.len(),
                if deletion.kept.is_empty() {
                    "none".to_owned()
                } else {
                    deletion.kept.join("; ")
                }
            )
        };
        fact(&mut body, "At Zoom", esc(&text));
    }
    if !detail.updates.is_empty() {
        fact(&mut body, "Zoom updates", esc(&detail.updates.join(", ")));
    }
    body.push_str("</dl>");

    body.push_str(
        "<h2>Files</h2><table id=files><thead><tr><th>File</th><th>Type</th><th>State</th>\
         <th class=num>Size</th><th>When</th><th>Failure</th></tr></thead><tbody>",
    );
    if detail.files.is_empty() {
        body.push_str("<tr><td colspan=6 class=muted>No file known yet.</td></tr>");
    }
    for file in &detail.files {
        let _ = write!(
            body,
            "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td class=num>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&file.state),
            esc(&file.file_id),
            opt(file.file_type.as_deref()),
            badge(&file.state),
            file.size
                .map(bytes)
                .map(|size| esc(&size))
                .unwrap_or_default(),
            when(Some(file.at), now),
            file.failure
                .as_ref()
                .map(|failure| format!("<code>{}</code>", esc(&failure.code)))
                .unwrap_or_default(),
        );
    }
    body.push_str("</tbody></table>");

    body.push_str(
        "<h2>History</h2><table id=history><thead><tr><th>Time</th><th>State</th><th>Stage</th>\
         <th>File</th><th>Process</th><th>Origin</th><th>Details</th></tr></thead><tbody>",
    );
    for (index, entry) in detail.history.iter().enumerate() {
        if detail.history_omitted > 0 && index == 50 {
            let _ = write!(
                body,
                "<tr><td colspan=7 class=muted>… {} lines left out …</td></tr>",
                detail.history_omitted
            );
        }
        let mut details = Vec::new();
        if let Some(code) = &entry.code {
            details.push(format!("<code>{}</code>", esc(code)));
        }
        if let Some(attempt) = entry.attempt {
            details.push(format!("attempt {attempt}"));
        }
        if let Some(note) = &entry.note {
            details.push(user(note));
        }
        if let Some(reason) = &entry.reason {
            details.push(user(reason));
        }
        if let Some(job) = &entry.replay_job {
            details.push(format!("replay job {}", user(job)));
        }
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=small>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&time(entry.at)),
            badge(&entry.state),
            esc(&entry.stage),
            entry
                .file_id
                .as_deref()
                .map(|id| format!("<code>{}</code>", esc(id)))
                .unwrap_or_default(),
            opt(entry.process.as_deref()),
            opt(entry.origin.as_deref()),
            details.join(" · "),
        );
    }
    body.push_str("</tbody></table>");
    document(
        &format!(
            "{} — zoom-relay status",
            meeting.topic.as_deref().unwrap_or(&meeting.meeting_uuid)
        ),
        now,
        &body,
    )
}

/// An error, as a page.
pub fn error(code: &str, message: &str, now: DateTime<Utc>) -> String {
    document(
        "zoom-relay status",
        now,
        &format!(
            "<p class=small><a href=\"/\">← all meetings</a></p><div class=\"headline warn\">{}</div>\
             <p class=\"small muted\">error code <code>{}</code></p>",
            esc(message),
            esc(code)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(
            meeting_href("aB+c/d==", "acme"),
            "/meetings/aB%2Bc%2Fd%3D%3D?account=acme"
        );
    }
}
