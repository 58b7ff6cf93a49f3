//! The statuses and intents a distribution row can have, as stored and as the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A distribution's position in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Recorded, not yet known to exist in CloudFront.
    Creating,
    /// Created; CloudFront reports InProgress.
    Deploying,
    /// CloudFront reports Deployed.
    Deployed,
    /// A configuration change requested with PATCH is being applied; CloudFront reports
    /// InProgress until it has propagated.
    Updating,
    /// Deletion requested: the disable is sent or about to be, and the service waits for
    /// CloudFront to report Deployed with Enabled=false.
    Disabling,
    /// DeleteDistribution is under way.
    Deleting,
    /// Gone from CloudFront; the row is kept as a record.
    Deleted,
    /// Disabled and kept in CloudFront, as a delete with `retain` asked for.
    Disabled,
    /// Needs a person; the reason is in `last_error`.
    Failed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Creating,
        Status::Deploying,
        Status::Deployed,
        Status::Updating,
        Status::Disabling,
        Status::Deleting,
        Status::Deleted,
        Status::Disabled,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Deploying => "deploying",
            Status::Deployed => "deployed",
            Status::Updating => "updating",
            Status::Disabling => "disabling",
            Status::Deleting => "deleting",
            Status::Deleted => "deleted",
            Status::Disabled => "disabled",
            Status::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Whether the row will never change again without a person asking for it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Deployed | Status::Deleted | Status::Disabled | Status::Failed
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The user's most recent request for the distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Keep the distribution.
    Keep,
    /// Disable, wait for Deployed, then delete.
    Delete,
    /// Disable and keep it, as Terraform's `retain_on_delete` does.
    Retain,
}

impl Intent {
    pub const ALL: [Intent; 3] = [Intent::Keep, Intent::Delete, Intent::Retain];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Keep => "keep",
            Intent::Delete => "delete",
            Intent::Retain => "retain",
        }
    }

    pub fn parse(value: &str) -> Option<Intent> {
        Intent::ALL
            .into_iter()
            .find(|intent| intent.as_str() == value)
    }

    /// Returns whether the user wants the distribution disabled (deleted or retained).
    pub fn wants_disabled(self) -> bool {
        !matches!(self, Intent::Keep)
    }
}
