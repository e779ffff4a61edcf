//! What Zoom knows of a meeting beside its recordings, each behind its own scope (see
//! [`super::Capability`]): a past meeting's participants, a webinar's panelists, attendees and
//! Q&A, and the AI Companion summary. Shapes as Zoom's API documents them; fields Zoom may leave
//! out are optional.

use serde::{Deserialize, Serialize};

use super::ratelimit::{Category, Priority};
use super::{ZoomClient, ZoomError, meeting_path_segment};

/// One attendance of a past meeting or webinar (a person who rejoined appears once per join).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub join_time: Option<String>,
    #[serde(default)]
    pub leave_time: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub duration: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
}

/// A webinar's panelist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panelist {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// The AI Companion's summary of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingSummary {
    #[serde(default)]
    pub summary_title: Option<String>,
    #[serde(default)]
    pub summary_overview: Option<String>,
    #[serde(default)]
    pub summary_details: Vec<SummaryDetail>,
    #[serde(default)]
    pub next_steps: Vec<String>,
    #[serde(default)]
    pub summary_created_time: Option<String>,
    #[serde(default)]
    pub summary_last_modified_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryDetail {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

/// One attendee's questions in a webinar's Q&A.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaAsker {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub question_details: Vec<QaEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaEntry {
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub answer: Option<String>,
}

impl ZoomClient {
    /// `GET /past_meetings/{uuid}/participants`, every page (Medium).
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = uuid))]
    pub async fn past_meeting_participants(
        &self,
        uuid: &str,
    ) -> Result<Vec<Participant>, ZoomError> {
        let path = format!("/past_meetings/{}/participants", meeting_path_segment(uuid));
        self.all_pages(Category::Medium, &path, &[]).await
    }

    /// `GET /past_webinars/{uuid}/participants`, every page (Medium).
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = uuid))]
    pub async fn past_webinar_participants(
        &self,
        uuid: &str,
    ) -> Result<Vec<Participant>, ZoomError> {
        let path = format!("/past_webinars/{}/participants", meeting_path_segment(uuid));
        self.all_pages(Category::Medium, &path, &[]).await
    }

    /// `GET /webinars/{id}/panelists` (Medium): one answer holds them all.
    #[tracing::instrument(skip_all, fields(account = %self.account, webinar_id))]
    pub async fn webinar_panelists(&self, webinar_id: u64) -> Result<Vec<Panelist>, ZoomError> {
        #[derive(Deserialize)]
        struct Panelists {
            #[serde(default)]
            panelists: Vec<Panelist>,
        }
        let path = format!("/webinars/{webinar_id}/panelists");
        let answer: Panelists = self
            .get_json((Category::Medium, Priority::Live), &path, &[])
            .await?;
        Ok(answer.panelists)
    }

    /// `GET /past_webinars/{uuid}/qa` (Medium).
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = uuid))]
    pub async fn past_webinar_qa(&self, uuid: &str) -> Result<Vec<QaAsker>, ZoomError> {
        #[derive(Deserialize)]
        struct Qa {
            #[serde(default)]
            questions: Vec<QaAsker>,
        }
        let path = format!("/past_webinars/{}/qa", meeting_path_segment(uuid));
        let answer: Qa = self
            .get_json((Category::Medium, Priority::Live), &path, &[])
            .await?;
        Ok(answer.questions)
    }

    /// `GET /meetings/{uuid}/meeting_summary` (Light).
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_uuid = uuid))]
    pub async fn meeting_summary(&self, uuid: &str) -> Result<MeetingSummary, ZoomError> {
        let path = format!("/meetings/{}/meeting_summary", meeting_path_segment(uuid));
        self.get_json((Category::Light, Priority::Live), &path, &[])
            .await
    }

    /// The alternative hosts of a meeting (`GET /meetings/{id}`) or a webinar
    /// (`GET /webinars/{id}`), Light: `settings.alternative_hosts`, emails separated by `;` (or
    /// `,`, as older answers have them).
    #[tracing::instrument(skip_all, fields(account = %self.account, meeting_id))]
    pub async fn alternative_hosts(
        &self,
        meeting_id: u64,
        webinar: bool,
    ) -> Result<Vec<String>, ZoomError> {
        #[derive(Deserialize)]
        struct Scheduled {
            #[serde(default)]
            settings: Settings,
        }
        #[derive(Deserialize, Default)]
        struct Settings {
            #[serde(default)]
            alternative_hosts: String,
        }
        let kind = if webinar { "webinars" } else { "meetings" };
        let path = format!("/{kind}/{meeting_id}");
        let answer: Scheduled = self
            .get_json((Category::Light, Priority::Live), &path, &[])
            .await?;
        Ok(answer
            .settings
            .alternative_hosts
            .split([';', ','])
            .map(str::trim)
            .filter(|email| !email.is_empty())
            .map(str::to_owned)
            .collect())
    }
}
