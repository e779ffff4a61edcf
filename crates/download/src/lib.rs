//! The download stage: one file from Zoom into staging.
//!
//! The file streams through the account's Zoom client (auth chain, allowlist, resume, size and
//! HTML checks) into a staging writer that aborts on any failure, so a half-written file never
//! appears. Once complete, a done marker records its size and SHA-256; a task for a done file is
//! skipped (idempotent on meeting uuid and file id). When this file completes the meeting —
//! every wanted file is done — assemble is told; otherwise nothing is sent, so a meeting of N
//! files triggers one assembly, not N.
//!
//! A file given up on (a permanent failure, or the last attempt) is marked failed before its
//! task is dead-lettered: the meeting is assembled and archived without it, and its manifest
//! says what is missing and why, rather than nothing of the meeting ever being archived.

use std::time::Duration;

use object_store::ObjectStoreExt;
use relay_core::consumer::{Context, Stage};
use relay_core::failure::StageError;
use relay_core::status::{State, Transition};
use relay_pipeline::Shared;
use relay_pipeline::manifest::{FailedFile, StagedFile};
use relay_pipeline::messages::{AssembleTask, FileTask};
use relay_pipeline::staging::StagingKey;
use relay_storage::copy_streaming;
use serde_json::json;
use tracing::info;
use zoom_api::client::FileSource;

pub struct Download {
    shared: Shared,
}

impl Download {
    pub fn new(shared: &Shared) -> Self {
        Self {
            shared: shared.clone(),
        }
    }
}

impl Stage for Download {
    type Input = FileTask;

    async fn handle(&self, task: FileTask, context: &Context) -> Result<(), StageError> {
        let account = self.shared.accounts.resolve(context.binding())?;
        match self.fetch(account, &task, context).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let final_attempt = context.attempt() >= self.shared.settings.max_attempts;
                // A wait (a file still processing, a download continuing from its parts)
                // spends no attempt and comes back: the file is not given up on.
                let failed = matches!(error, StageError::Failed { .. });
                if failed && (!error.code().is_retryable() || final_attempt) {
                    self.give_up(account, &task, &error, context).await?;
                }
                Err(error)
            }
        }
    }
}

impl Download {
    /// Records the file as given up on and, if that settles the meeting, asks for assembly.
    async fn give_up(
        &self,
        account: &relay_pipeline::Account,
        task: &FileTask,
        error: &StageError,
        context: &Context,
    ) -> Result<(), StageError> {
        let staging = self
            .shared
            .staging
            .meeting(account.name(), &task.meeting_uuid);
        let (code, reason) = match error {
            StageError::Failed { code, reason } | StageError::Wait { code, reason, .. } => {
                (code, reason)
            }
        };
        let failed = FailedFile {
            file_id: task.file_id().to_owned(),
            code: code.as_str().to_owned(),
            reason: reason.clone(),
            failed_at: chrono::Utc::now(),
        };
        staging
            .location()
            .put_json(
                &staging.path(StagingKey::Failed {
                    file_id: task.file_id(),
                })?,
                &failed,
            )
            .await?;
        if staging.snapshot().await?.complete() {
            context
                .send(&AssembleTask {
                    meeting_uuid: task.meeting_uuid.clone(),
                    staged_file: task.file_id().to_owned(),
                })
                .await?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        account: &relay_pipeline::Account,
        task: &FileTask,
        context: &Context,
    ) -> Result<(), StageError> {
        let binding = context.binding();
        let (uuid, file_id) = (task.meeting_uuid.as_str(), task.file_id());
        let staging = self.shared.staging.meeting(account.name(), uuid);
        let location = staging.location();
        let done = staging.path(StagingKey::Done { file_id })?;
        let staged: Option<StagedFile> = if binding.force {
            None
        } else {
            location.get_json(&done).await?
        };
        if staged.is_none() {
            let data = staging.path(StagingKey::Data { file_id })?;
            let parts = held_parts(location, &staging, file_id).await?;
            let size_record = staging.path(StagingKey::PartsSize { file_id })?;
            let known_size: Option<u64> = match parts.is_empty() {
                true => None,
                false => location.get_json(&size_record).await?,
            };
            let settings = &self.shared.settings;
            let missing = missing_ranges(
                &parts,
                FileSize {
                    known: known_size,
                    listed: task.file.file_size,
                },
                settings.download_ranges,
                settings.download_range_min_bytes,
            );
            let source = |range: &ByteRange| -> Result<FileSource, StageError> {
                Ok(FileSource {
                    meeting_uuid: uuid.to_owned(),
                    file_id: file_id.to_owned(),
                    download_url: task.file.download_url.clone().ok_or_else(|| {
                        StageError::new(
                            relay_core::Code::FileProcessing,
                            "Zoom gave no download URL yet",
                        )
                    })?,
                    download_token: task.download_token.clone(),
                    expected_size: task.file.file_size,
                    start_at: range.start,
                    end_at: range.end,
                })
            };
            let held_until = std::time::Instant::now() + settings.download_hold_limit;
            let held = |received: u64| {
                info!(
                    received,
                    "held the delivery for the hold limit: continuing from its parts"
                );
                StageError::wait(
                    relay_core::Code::DownloadContinues,
                    format!(
                        "held {:?}; continues from its parts",
                        settings.download_hold_limit
                    ),
                    Duration::ZERO,
                )
            };
            let written = if missing.len() == 1 && parts.is_empty() {
                // The whole file over one connection: written straight under its name and
                // hashed on the way, no join.
                let whole = ByteRange {
                    start: 0,
                    end: None,
                };
                match fetch_range(account, source(&whole)?, location, &data, held_until).await? {
                    Fetched::Complete { downloaded, .. } => StagedBytes {
                        size: downloaded.bytes,
                        sha256: downloaded.sha256.ok_or_else(|| {
                            StageError::new(
                                relay_core::Code::VerificationFailed,
                                "the whole file's download gave no digest",
                            )
                        })?,
                    },
                    Fetched::Held { received } => {
                        // What was written under the file's name is the first part.
                        let first = staging.path(StagingKey::Part { file_id, offset: 0 })?;
                        location
                            .store
                            .rename(&data, &first)
                            .await
                            .map_err(|error| {
                                StageError::from_error(relay_core::Code::StorageFailed, &error)
                            })?;
                        return Err(held(received));
                    }
                }
            } else {
                // Each missing range over its own connection, into a part named by its
                // offset; all of them at once.
                let mut fetches = Vec::with_capacity(missing.len());
                for range in &missing {
                    let part = staging.path(StagingKey::Part {
                        file_id,
                        offset: range.start,
                    })?;
                    fetches.push(async move {
                        fetch_range(account, source(range)?, location, &part, held_until).await
                    });
                }
                let mut sizes: Vec<u64> = known_size.into_iter().collect();
                let mut received = None;
                let mut failed = None;
                for fetched in futures_util::future::join_all(fetches).await {
                    // Parts that did complete are kept for the next attempt.
                    match fetched {
                        Ok(Fetched::Complete { file_size, .. }) => sizes.extend(file_size),
                        Ok(Fetched::Held { received: at }) => received = Some(at),
                        Err(error) => failed = Some(error),
                    }
                }
                let total = sizes.first().copied();
                if sizes.iter().any(|size| Some(*size) != total) {
                    // Parts of two versions of a file must never be joined: start over.
                    remove_parts(location, &staging, file_id).await?;
                    return Err(StageError::new(
                        relay_core::Code::VerificationFailed,
                        format!("the file server gave different sizes for one file: {sizes:?}"),
                    ));
                }
                if let Some(total) = total
                    && known_size != Some(total)
                {
                    location.put_json(&size_record, &total).await?;
                }
                if let Some(error) = failed {
                    return Err(error);
                }
                if let Some(received) = received {
                    return Err(held(received));
                }
                join_parts(location, &staging, file_id, &data, total).await?
            };
            let record = StagedFile {
                file_id: file_id.to_owned(),
                size: written.size,
                sha256: written.sha256,
                staged_at: chrono::Utc::now(),
            };
            location.put_json(&done, &record).await?;
            // The file is whole and recorded: any part left of it (this download's, or an
            // earlier attempt's) is no longer needed. A part that will not go is only untidy.
            if let Err(error) = remove_parts(location, &staging, file_id).await {
                tracing::debug!(%error, "parts were not removed");
            }
            // Fetched after all (a replay after a fix): the meeting no longer lacks it.
            location
                .delete(&staging.path(StagingKey::Failed { file_id })?)
                .await?;
            self.shared
                .metrics
                .add_bytes(relay_core::broker::StageName::Download, record.size);
            info!(bytes = record.size, "file staged");
            context
                .record(
                    Transition::new(binding, uuid, State::Staged, "download")
                        .file(file_id)
                        .detail(json!({
                            "file_type": task.file.file_type.as_str(),
                            "size": record.size,
                        })),
                )
                .await?;
        }
        if staging.snapshot().await?.complete() {
            context
                .send(&AssembleTask {
                    meeting_uuid: uuid.to_owned(),
                    staged_file: file_id.to_owned(),
                })
                .await?;
        }
        Ok(())
    }
}

/// One part of a file: a range fetched beside others, or a download that outlasted its hold
/// limit. Named by its offset in the file.
struct Part {
    path: object_store::path::Path,
    offset: u64,
    size: u64,
}

impl Part {
    fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// Bytes `start..end` of a file; `end: None` runs to the file's end, whatever its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRange {
    start: u64,
    end: Option<u64>,
}

/// What the bytes staged under the file's name hold.
struct StagedBytes {
    size: u64,
    sha256: String,
}

enum Fetched {
    /// The range is in its part, whole. `file_size`: the file's size, as the server gave it.
    Complete {
        downloaded: zoom_api::client::Downloaded,
        file_size: Option<u64>,
    },
    /// The hold limit came first: the part holds the range up to `received`.
    Held { received: u64 },
}

/// Fetches one range of the file into `target`, until the range is whole or `held_until`
/// passes with bytes still to come. Writes nothing for an empty range (one starting at the
/// file's end).
async fn fetch_range(
    account: &relay_pipeline::Account,
    source: FileSource,
    location: &relay_storage::Location,
    target: &object_store::path::Path,
    held_until: std::time::Instant,
) -> Result<Fetched, StageError> {
    let start = source.start_at;
    let (end_at, listed) = (source.end_at, source.expected_size);
    let range = start > 0 || source.end_at.is_some();
    let mut download = account.zoom.download(source).await?;
    // A range with nothing left (it starts at the file's end) writes no part; a whole file of
    // no bytes is still written, as an empty file.
    if range && download.is_complete() {
        let file_size = download.promised();
        let downloaded = download.finish().await?;
        return Ok(Fetched::Complete {
            downloaded,
            file_size,
        });
    }
    // Sizes the writer's parts: the range's end, else the file's.
    let length = end_at.or(download.promised()).or(listed).unwrap_or(0);
    let mut writer = location.writer(target, length.saturating_sub(start));
    let copied = async {
        while let Some(chunk) = download.next_chunk().await? {
            writer.write(chunk).await?;
            // Only with bytes still to come: a continuation of a range already whole would ask
            // for bytes past its end.
            if !download.is_complete() && std::time::Instant::now() >= held_until {
                return Ok(false);
            }
        }
        Ok::<_, StageError>(true)
    }
    .await;
    let complete = match copied {
        Ok(complete) => complete,
        Err(error) => {
            writer.abort().await;
            return Err(error);
        }
    };
    writer.finish().await?;
    if !complete {
        return Ok(Fetched::Held {
            received: download.received(),
        });
    }
    let file_size = download.promised();
    Ok(Fetched::Complete {
        downloaded: download.finish().await?,
        file_size,
    })
}

/// What is known of a file's size.
#[derive(Debug, Clone, Copy)]
struct FileSize {
    /// As the file server gave it for an earlier part: exact.
    known: Option<u64>,
    /// Zoom's `file_size`: an estimate to split by.
    listed: Option<u64>,
}

/// What is still to fetch around the parts held: the gaps between them and the rest after the
/// last — up to the known size, or open-ended, so the server's length decides where the file
/// ends. With `connections` above one, the longest ranges are halved until there are that
/// many, none shorter than `min_bytes` (an open range counts as what the listed size leaves).
fn missing_ranges(
    parts: &[Part],
    size: FileSize,
    connections: usize,
    min_bytes: u64,
) -> Vec<ByteRange> {
    let mut missing = Vec::new();
    let mut cursor = 0;
    for part in parts {
        if part.offset > cursor {
            missing.push(ByteRange {
                start: cursor,
                end: Some(part.offset),
            });
        }
        cursor = cursor.max(part.end());
    }
    match size.known {
        Some(known) if cursor >= known => {}
        known => missing.push(ByteRange {
            start: cursor,
            end: known,
        }),
    }
    let length = |range: &ByteRange| {
        range
            .end
            .or(size.listed)
            .unwrap_or(range.start)
            .saturating_sub(range.start)
    };
    while missing.len() < connections {
        let Some((index, longest)) = missing
            .iter()
            .enumerate()
            .map(|(index, range)| (index, length(range)))
            .max_by_key(|(_, length)| *length)
        else {
            break;
        };
        if longest < 2 * min_bytes.max(1) {
            break;
        }
        let range = missing[index];
        let middle = range.start + longest / 2;
        missing[index].end = Some(middle);
        missing.insert(
            index + 1,
            ByteRange {
                start: middle,
                end: range.end,
            },
        );
    }
    missing
}

/// Joins the parts into the file by one streaming copy that hashes it as a whole. They must
/// cover the file from its first byte to `file_size` without a gap.
async fn join_parts(
    location: &relay_storage::Location,
    staging: &relay_pipeline::staging::MeetingStaging<'_>,
    file_id: &str,
    data: &object_store::path::Path,
    file_size: Option<u64>,
) -> Result<StagedBytes, StageError> {
    let parts = held_parts(location, staging, file_id).await?;
    let covered = parts.iter().try_fold(0, |cursor, part| {
        (part.offset == cursor).then(|| part.end())
    });
    let unverified = |detail: String| StageError::new(relay_core::Code::VerificationFailed, detail);
    let Some(covered) = covered else {
        return Err(unverified("the file's parts leave a gap".into()));
    };
    if file_size.is_some_and(|size| size != covered) {
        return Err(unverified(format!(
            "the parts hold {covered} bytes, the file server promised {file_size:?}"
        )));
    }
    let sources: Vec<_> = parts.iter().map(|part| part.path.clone()).collect();
    let (joined, sha256) = copy_streaming(location, &sources, location, data, covered).await?;
    if joined != covered {
        return Err(unverified(format!(
            "joined {joined} bytes of parts holding {covered}"
        )));
    }
    Ok(StagedBytes {
        size: joined,
        sha256,
    })
}

/// Removes every part of `file_id` and the size recorded with them.
async fn remove_parts(
    location: &relay_storage::Location,
    staging: &relay_pipeline::staging::MeetingStaging<'_>,
    file_id: &str,
) -> Result<(), StageError> {
    for part in location
        .list(&staging.path(StagingKey::PartsDir { file_id })?)
        .await?
    {
        location.delete(&part).await?;
    }
    Ok(())
}

/// The parts held for `file_id`, in file order. A part overlapping an earlier one (an older
/// attempt's) is left out: its bytes are fetched again or already held.
async fn held_parts(
    location: &relay_storage::Location,
    staging: &relay_pipeline::staging::MeetingStaging<'_>,
    file_id: &str,
) -> Result<Vec<Part>, StageError> {
    let mut found = Vec::new();
    for path in location
        .list(&staging.path(StagingKey::PartsDir { file_id })?)
        .await?
    {
        let Some(offset) = path.filename().and_then(|name| name.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(size) = location.exists_with_size(&path).await? {
            found.push(Part { path, offset, size });
        }
    }
    found.sort_by_key(|part| part.offset);
    let mut held: Vec<Part> = Vec::new();
    for part in found {
        if part.size > 0 && part.offset >= held.last().map_or(0, Part::end) {
            held.push(part);
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn part(offset: u64, size: u64) -> Part {
        Part {
            path: object_store::path::Path::from(format!("parts/f/{offset}")),
            offset,
            size,
        }
    }

    fn range(start: u64, end: Option<u64>) -> ByteRange {
        ByteRange { start, end }
    }

    fn listed(bytes: u64) -> FileSize {
        FileSize {
            known: None,
            listed: Some(bytes),
        }
    }

    #[test]
    fn once_the_servers_size_is_known_nothing_past_it_is_asked_for() {
        let known = |bytes| FileSize {
            known: Some(bytes),
            listed: Some(bytes + 1000),
        };
        // The last range is whole; another was held: only the gap is left.
        assert_eq!(
            missing_ranges(&[part(0, 10), part(20, 40)], known(60), 1, 64 * MIB),
            [range(10, Some(20))]
        );
        // Everything held: nothing to fetch, only the join.
        assert!(missing_ranges(&[part(0, 60)], known(60), 4, 1).is_empty());
        // The rest after the last part ends at the known size, not open-ended.
        assert_eq!(
            missing_ranges(&[part(0, 10)], known(60), 1, 64 * MIB),
            [range(10, Some(60))]
        );
    }

    #[test]
    fn one_connection_fetches_the_whole_file_or_the_rest_after_its_parts() {
        assert_eq!(
            missing_ranges(&[], listed(400 * MIB), 1, 64 * MIB),
            [range(0, None)]
        );
        assert_eq!(
            missing_ranges(&[part(0, 10)], listed(400 * MIB), 1, 64 * MIB),
            [range(10, None)]
        );
    }

    #[test]
    fn a_large_file_is_halved_into_as_many_ranges_as_connections_the_last_open_ended() {
        assert_eq!(
            missing_ranges(&[], listed(400 * MIB), 4, 64 * MIB),
            [
                range(0, Some(100 * MIB)),
                range(100 * MIB, Some(200 * MIB)),
                range(200 * MIB, Some(300 * MIB)),
                range(300 * MIB, None),
            ]
        );
    }

    #[test]
    fn ranges_are_never_shorter_than_the_minimum_nor_split_without_a_known_size() {
        assert_eq!(
            missing_ranges(&[], listed(100 * MIB), 4, 64 * MIB),
            [range(0, None)]
        );
        assert_eq!(
            missing_ranges(&[], listed(200 * MIB), 4, 64 * MIB),
            [range(0, Some(100 * MIB)), range(100 * MIB, None)]
        );
        assert_eq!(
            missing_ranges(
                &[],
                FileSize {
                    known: None,
                    listed: None
                },
                4,
                64 * MIB
            ),
            [range(0, None)]
        );
    }

    #[test]
    fn the_gaps_between_parts_are_fetched_beside_the_rest() {
        // Ranges held at the hold limit: each part is its range as far as it got.
        let parts = [part(0, 10), part(20, 10), part(50, 5)];
        assert_eq!(
            missing_ranges(&parts, listed(60), 1, 64 * MIB),
            [range(10, Some(20)), range(30, Some(50)), range(55, None)]
        );
    }
}
