//! The account sweep behind `admin sweep`: list every distribution in the account, classify
//! each against the database, and adopt and delete the ones the operator selected.
//!
//! Safety rules, each enforced below:
//! - Without a selecting option nothing changes.
//! - An enabled distribution is selected only when it carries this service's row-id tag
//!   (an orphan, with `adopt_orphans`).
//! - A distribution that a live row manages is never selected.
//! - Every List, ListTags and Get call takes a token from the shared `read` bucket, and
//!   TagResource from `mutating`, so a sweep cannot starve the calls made for users.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{AdoptRequest, CallPacer, adopt};
use crate::cloudfront::{CloudFront, ROW_ID_TAG, Summary};
use crate::lifecycle::CallError;
use crate::store::StoreError;
use crate::store::adoption;
use crate::store::rate_limit::{Bucket, RateLimitSettings};

/// History reason of every adoption and deletion request a sweep makes.
pub const SWEEP_REASON: &str = "sweep";

/// The sweep's classification of one distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A live row has its CloudFront id, or its row-id tag names a live row that is still
    /// waiting to learn the id.
    Managed,
    /// Tagged with this service's row id, but no live row manages it.
    Orphan,
    /// Disabled and not managed: typically left behind by a deletion that was never finished.
    DisabledUnmanaged,
    /// Enabled and not managed: someone else's distribution, never touched.
    Other,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Managed => "managed",
            Class::Orphan => "orphan",
            Class::DisabledUnmanaged => "disabled-unmanaged",
            Class::Other => "other",
        }
    }
}

/// Classifies a distribution. `managed_row` is the live row with its CloudFront id, and
/// `live_rows` contains the ids of every live row.
pub fn classify(
    summary: &Summary,
    tags: &[(String, String)],
    managed_row: Option<Uuid>,
    live_rows: &HashSet<Uuid>,
) -> Class {
    if managed_row.is_some() {
        return Class::Managed;
    }
    let tagged_row = tags
        .iter()
        .find(|(key, _)| key == ROW_ID_TAG)
        .map(|(_, value)| value.parse::<Uuid>().ok());
    match tagged_row {
        Some(Some(row)) if live_rows.contains(&row) => Class::Managed,
        // The tag marks the distribution as created by this service even when its value
        // names no live row or is not a UUID at all.
        Some(_) => Class::Orphan,
        None if !summary.enabled => Class::DisabledUnmanaged,
        None => Class::Other,
    }
}

/// An action the sweep takes on one distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepAction {
    /// Adopt it and request its deletion through the normal lifecycle.
    AdoptAndDelete,
}

/// Options of one sweep. Without `adopt_orphans` or `delete_disabled_older_than` the sweep
/// is a dry run.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Adopt and delete every orphan, enabled or not.
    pub adopt_orphans: bool,
    /// Adopt and delete every unmanaged disabled distribution (orphans included) whose
    /// config last changed at least this long ago.
    pub delete_disabled_older_than: Option<Duration>,
    /// Owner of the adopted rows.
    pub owner: String,
    /// Only distributions with all of these tags (key, value) are considered.
    pub tags: Vec<(String, String)>,
    /// Only distributions whose comment starts with this are considered.
    pub comment_prefix: Option<String>,
    pub rate_limits: RateLimitSettings,
}

impl SweepOptions {
    pub fn is_dry_run(&self) -> bool {
        !self.adopt_orphans && self.delete_disabled_older_than.is_none()
    }
}

/// One distribution the sweep looked at.
#[derive(Clone, Debug, Serialize)]
pub struct SweepEntry {
    pub cloudfront_id: String,
    pub class: Class,
    /// `InProgress` or `Deployed`.
    pub status: String,
    pub enabled: bool,
    pub last_modified: Option<DateTime<Utc>>,
    pub comment: String,
    /// The action the sweep took, or in a dry run would take; `None` leaves it alone.
    pub action: Option<SweepAction>,
    /// The row that manages it: the existing one, or the one the sweep adopted it into.
    pub row_id: Option<Uuid>,
    /// The reason the action failed; the distribution is then left as it was.
    pub error: Option<String>,
}

/// The outcome of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub dry_run: bool,
    pub entries: Vec<SweepEntry>,
}

impl SweepReport {
    /// Entries selected for adoption and deletion.
    pub fn selected(&self) -> impl Iterator<Item = &SweepEntry> {
        self.entries.iter().filter(|entry| entry.action.is_some())
    }

    /// Selected entries whose action failed.
    pub fn failed(&self) -> impl Iterator<Item = &SweepEntry> {
        self.selected().filter(|entry| entry.error.is_some())
    }
}

/// The reason a sweep stopped before it classified every distribution.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("listing CloudFront distributions failed with {}: {}", .0.code, .0.message)]
    CloudFront(CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CallError> for SweepError {
    fn from(error: CallError) -> Self {
        SweepError::CloudFront(error)
    }
}

/// Lists and classifies every distribution in the account and, unless this is a dry run,
/// adopts and requests the deletion of the selected ones. A failure on one distribution is
/// recorded in its entry and the sweep goes on.
pub async fn sweep(
    pool: &PgPool,
    cloudfront: &CloudFront,
    options: &SweepOptions,
) -> Result<SweepReport, SweepError> {
    let pacer = CallPacer {
        pool,
        settings: &options.rate_limits,
    };
    let live = adoption::live_rows(pool).await?;
    let live_rows: HashSet<Uuid> = live.iter().map(|(id, _)| *id).collect();
    let managed: HashMap<String, Uuid> = live
        .into_iter()
        .filter_map(|(id, cloudfront_id)| cloudfront_id.map(|cloudfront_id| (cloudfront_id, id)))
        .collect();

    let summaries = cloudfront
        .list_all_paced(async || -> Result<(), SweepError> {
            pacer.take(Bucket::Read).await?;
            Ok(())
        })
        .await?;
    let now = adoption::database_now(pool).await?;
    let dry_run = options.is_dry_run();

    let mut entries = Vec::new();
    for summary in summaries {
        if let Some(prefix) = &options.comment_prefix
            && !summary.comment.starts_with(prefix.as_str())
        {
            continue;
        }
        let managed_row = managed.get(&summary.id).copied();
        // A managed distribution needs no tags to classify, so they are read only when a
        // tag filter asks for them.
        let tags = if managed_row.is_none() || !options.tags.is_empty() {
            pacer.take(Bucket::Read).await?;
            match cloudfront.list_tags(&summary.arn).await {
                Ok(tags) => tags,
                Err(error) => {
                    pacer.observe(Bucket::Read, &error).await;
                    return Err(SweepError::CloudFront(error));
                }
            }
        } else {
            Vec::new()
        };
        if !has_all_tags(&tags, &options.tags) {
            continue;
        }

        let class = classify(&summary, &tags, managed_row, &live_rows);
        let action = select(&summary, class, options, now);
        entries.push(SweepEntry {
            cloudfront_id: summary.id,
            class,
            status: summary.status,
            enabled: summary.enabled,
            last_modified: summary.last_modified,
            comment: summary.comment,
            action,
            row_id: managed_row,
            error: None,
        });
    }

    if !dry_run {
        for entry in entries.iter_mut().filter(|entry| entry.action.is_some()) {
            let request = AdoptRequest {
                cloudfront_id: &entry.cloudfront_id,
                owner: &options.owner,
                reason: SWEEP_REASON,
                delete: true,
                require_disabled: entry.class != Class::Orphan,
            };
            match adopt(pool, cloudfront, Some(pacer), &request).await {
                Ok(row) => entry.row_id = Some(row.id),
                Err(error) => {
                    tracing::warn!(cloudfront.id = %entry.cloudfront_id, %error, "sweep could not adopt a distribution; it is left as it was");
                    entry.error = Some(error.to_string());
                }
            }
        }
    }
    Ok(SweepReport { dry_run, entries })
}

/// Decides whether the options select this distribution for adoption and deletion.
fn select(
    summary: &Summary,
    class: Class,
    options: &SweepOptions,
    now: DateTime<Utc>,
) -> Option<SweepAction> {
    let orphan = class == Class::Orphan && options.adopt_orphans;
    let old_disabled = matches!(class, Class::Orphan | Class::DisabledUnmanaged)
        && !summary.enabled
        && options
            .delete_disabled_older_than
            .zip(summary.last_modified)
            .is_some_and(|(minimum_age, last_modified)| {
                chrono::Duration::from_std(minimum_age)
                    .is_ok_and(|minimum_age| now - last_modified >= minimum_age)
            });
    (orphan || old_disabled).then_some(SweepAction::AdoptAndDelete)
}

fn has_all_tags(tags: &[(String, String)], required: &[(String, String)]) -> bool {
    required.iter().all(|wanted| tags.contains(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(enabled: bool) -> Summary {
        Summary {
            id: "E1".to_owned(),
            arn: "arn:aws:cloudfront::123456789012:distribution/E1".to_owned(),
            domain_name: "d1.cloudfront.net".to_owned(),
            status: "Deployed".to_owned(),
            enabled,
            comment: String::new(),
            aliases: Vec::new(),
            etag: None,
            last_modified: None,
        }
    }

    fn row_tag(row: Uuid) -> Vec<(String, String)> {
        vec![(ROW_ID_TAG.to_owned(), row.to_string())]
    }

    #[test]
    fn classes() {
        let live_row = Uuid::new_v4();
        let live = HashSet::from([live_row]);

        let cases = [
            (summary(true), Vec::new(), Some(live_row), Class::Managed),
            (summary(true), row_tag(live_row), None, Class::Managed),
            (summary(true), row_tag(Uuid::new_v4()), None, Class::Orphan),
            (summary(false), row_tag(Uuid::new_v4()), None, Class::Orphan),
            (summary(false), Vec::new(), None, Class::DisabledUnmanaged),
            (summary(true), Vec::new(), None, Class::Other),
        ];
        for (index, (summary, tags, managed_row, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                classify(&summary, &tags, managed_row, &live),
                expected,
                "case {index}"
            );
        }
    }

    #[test]
    fn enabled_other_is_never_selected() {
        let options = SweepOptions {
            adopt_orphans: true,
            delete_disabled_older_than: Some(Duration::ZERO),
            owner: "sweep".to_owned(),
            tags: Vec::new(),
            comment_prefix: None,
            rate_limits: RateLimitSettings::default(),
        };
        let mut enabled = summary(true);
        enabled.last_modified = Some(Utc::now() - chrono::Duration::days(365));

        assert_eq!(select(&enabled, Class::Other, &options, Utc::now()), None);
    }
}
