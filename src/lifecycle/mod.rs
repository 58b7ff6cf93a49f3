//! The lifecycle state machine: from a stored row and what CloudFront last returned to the
//! next action. Nothing here does I/O, so every transition is unit-tested in `tests.rs`.

pub mod schedule;
mod status;

#[cfg(test)]
mod tests;

pub use status::{Intent, Status};

/// The part of a stored row that decides what happens next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub status: Status,
    pub intent: Intent,
    pub has_cloudfront_id: bool,
    /// A CreateDistribution call may have reached CloudFront.
    pub create_attempted: bool,
    /// The service has seen its disable take effect (its Update succeeded, or a read showed
    /// Enabled=false), so a later read showing Enabled=true is a stale read or another actor.
    pub disable_confirmed: bool,
    /// Consecutive reads that contradicted what the service last did: Enabled=true after a
    /// confirmed disable, or an ETag other than the one its update returned.
    pub enabled_reads: u32,
    /// Consecutive failed attempts; throttling does not count.
    pub failures: u32,
    /// The user asked for a configuration that has not been sent to CloudFront yet.
    pub update_pending: bool,
    /// The ETag the service's own UpdateDistribution returned, while the row is `updating`.
    pub update_etag: Option<String>,
}

/// The class of a failed CloudFront call, which decides how it is handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// 400 Throttling: back off, and do not count it as a failed attempt.
    Throttled,
    /// 5xx, 408, timeouts, dropped connections: back off and retry.
    Transient,
    /// 412 PreconditionFailed or 400 InvalidIfMatchVersion: read a fresh ETag and retry.
    StaleETag,
    /// 409 DistributionNotDisabled: a change is still propagating, so wait.
    NotDisabled,
    /// 404 NoSuchDistribution.
    NotFound,
    /// 409 DistributionAlreadyExists for our CallerReference: the distribution with this id
    /// was created by an earlier attempt.
    AlreadyExists { cloudfront_id: String },
    /// An error that may clear up by itself within minutes, such as InvalidViewerCertificate
    /// for an ACM certificate that was issued a moment ago; permanent after a few attempts.
    PermanentUnlessSoon,
    /// AccessDenied, IllegalUpdate, InvalidArgument, CNAMEAlreadyExists, TooManyDistributions
    /// and any code the service does not know: a person must act.
    Permanent,
}

/// A failed CloudFront call, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub class: ErrorClass,
    /// CloudFront's error code, or a name for a failure below HTTP (for example `Timeout`).
    pub code: String,
    pub message: String,
}

/// The state a GetDistribution, CreateDistribution or UpdateDistribution call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Status is Deployed rather than InProgress.
    pub deployed: bool,
    pub enabled: bool,
    pub etag: String,
}

/// The result of the call the previous decision asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// No call made yet in this step.
    Nothing,
    Read(Result<Snapshot, CallError>),
    Created(Result<Snapshot, CallError>),
    Updated(Result<Snapshot, CallError>),
    Disabled(Result<Snapshot, CallError>),
    Deleted(Result<(), CallError>),
}

/// The reason the worker stops and looks again later; the schedule turns it into a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// CloudFront is propagating a change (InProgress).
    Deploy,
    /// A read contradicted the last known state (Enabled=true after a confirmed disable, or
    /// Delete returned DistributionNotDisabled), so read again soon before acting on it.
    Confirm,
    /// The last call failed; retry after a growing delay.
    Backoff,
    /// CloudFront throttled the call.
    Throttled,
}

/// The next thing the worker does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// GetDistribution, for a fresh Status, Enabled and ETag.
    Read,
    /// CreateDistributionWithTags with the stored CallerReference.
    Create,
    /// Record this CloudFront id as ours (our CallerReference created it), then read it.
    Adopt { cloudfront_id: String },
    /// UpdateDistribution with the requested configuration applied to the config just read,
    /// and If-Match set to this ETag.
    Update { etag: String },
    /// UpdateDistribution with Enabled=false and If-Match set to this ETag.
    Disable { etag: String },
    /// DeleteDistribution with If-Match set to this ETag.
    Delete { etag: String },
    /// Stop for now and look again later.
    Recheck(Wait),
    /// Nothing more to do until a person requests something.
    Settle,
}

/// The change to the count of consecutive failed attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failures {
    Reset,
    Keep,
    Increment,
}

/// The next action and the row's state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub status: Status,
    /// Recorded in the history when the status changes.
    pub reason: &'static str,
    /// The error to show in the resource, if this decision comes from one.
    pub error: Option<CallError>,
    pub failures: Failures,
    /// A change was just made in CloudFront, so a new wait for Deployed begins.
    pub wait_started: bool,
    pub disable_confirmed: bool,
    pub enabled_reads: u32,
}

/// Limits that bound retries; they come from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failed attempts (throttling excluded) before a row is marked failed.
    pub max_attempts: u32,
    /// Attempts allowed for errors that may clear up by themselves, such as
    /// InvalidViewerCertificate right after the certificate was issued.
    pub short_retry_attempts: u32,
    /// Reads in a row that must show Enabled=true after a confirmed disable before the
    /// service concludes that someone re-enabled the distribution.
    pub reenable_confirmations: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 25,
            short_retry_attempts: 5,
            reenable_confirmations: 2,
        }
    }
}

/// The error recorded when another actor re-enables a distribution the service is deleting.
pub const REENABLED_CODE: &str = "DistributionReEnabled";

/// The error recorded when a row gives up after too many failed attempts.
pub const TOO_MANY_ATTEMPTS_CODE: &str = "TooManyAttempts";

/// Decides the next action for `row` given what the last call returned.
pub fn decide(row: &Stored, observed: Observed, policy: &Policy) -> Decision {
    match observed {
        Observed::Nothing => first_action(row),
        Observed::Read(Ok(snapshot)) => on_snapshot(row, &snapshot, policy),
        Observed::Read(Err(error)) => match error.class {
            ErrorClass::NotFound => gone(row),
            _ => on_error(row, error, policy),
        },
        Observed::Created(Ok(snapshot)) => {
            let mut decision = on_snapshot(row, &snapshot, policy);
            decision.wait_started = true;
            if matches!(decision.action, Action::Recheck(_) | Action::Settle) {
                decision.reason = "created in CloudFront";
            }
            decision
        }
        Observed::Created(Err(error)) => match error.class {
            ErrorClass::AlreadyExists { cloudfront_id } => Decision {
                action: Action::Adopt { cloudfront_id },
                reason: "CallerReference already used by an earlier attempt; adopting its distribution",
                failures: Failures::Reset,
                ..unchanged(row)
            },
            _ => on_error(row, error, policy),
        },
        Observed::Updated(Ok(_)) => Decision {
            action: Action::Recheck(Wait::Deploy),
            status: Status::Updating,
            reason: "update sent; waiting for Deployed",
            failures: Failures::Reset,
            wait_started: true,
            ..unchanged(row)
        },
        Observed::Updated(Err(error)) => match error.class {
            ErrorClass::StaleETag => reread(row),
            ErrorClass::NotFound => gone(row),
            _ => on_error(row, error, policy),
        },
        Observed::Disabled(Ok(_)) => Decision {
            action: Action::Recheck(Wait::Deploy),
            status: Status::Disabling,
            reason: "disable sent; waiting for Deployed",
            failures: Failures::Reset,
            wait_started: true,
            disable_confirmed: true,
            enabled_reads: 0,
            ..unchanged(row)
        },
        Observed::Disabled(Err(error)) => match error.class {
            ErrorClass::StaleETag => reread(row),
            ErrorClass::NotFound => gone(row),
            _ => on_error(row, error, policy),
        },
        Observed::Deleted(Ok(())) => Decision {
            action: Action::Settle,
            status: Status::Deleted,
            reason: "deleted",
            failures: Failures::Reset,
            ..unchanged(row)
        },
        Observed::Deleted(Err(error)) => match error.class {
            ErrorClass::NotFound => Decision {
                reason: "deleted",
                ..gone(row)
            },
            ErrorClass::StaleETag => reread(row),
            // CloudFront can return this briefly even after a read showed Deployed and
            // disabled; look again shortly rather than fail.
            ErrorClass::NotDisabled => Decision {
                action: Action::Recheck(Wait::Confirm),
                status: Status::Disabling,
                reason: "CloudFront does not consider it disabled yet; waiting",
                ..unchanged(row)
            },
            _ => on_error(row, error, policy),
        },
    }
}

/// Decides the first action of a step, before any call.
fn first_action(row: &Stored) -> Decision {
    if row.status == Status::Failed || row.status == Status::Deleted {
        return Decision {
            action: Action::Settle,
            ..unchanged(row)
        };
    }

    if row.has_cloudfront_id {
        return Decision {
            action: Action::Read,
            ..unchanged(row)
        };
    }

    // Without a CloudFront id, only a create that never left the service is safe to skip:
    // one that may have reached CloudFront is repeated with the same CallerReference, which
    // either creates the distribution or names the one the earlier attempt created.
    if row.intent.wants_disabled() && !row.create_attempted {
        return Decision {
            action: Action::Settle,
            status: Status::Deleted,
            reason: "deleted before it was created in CloudFront",
            ..unchanged(row)
        };
    }

    Decision {
        action: Action::Create,
        status: Status::Creating,
        ..unchanged(row)
    }
}

/// Decides from a fresh view of the distribution.
fn on_snapshot(row: &Stored, snapshot: &Snapshot, policy: &Policy) -> Decision {
    let base = Decision {
        failures: Failures::Reset,
        ..unchanged(row)
    };

    if row.intent == Intent::Keep {
        if row.update_pending {
            return Decision {
                action: Action::Update {
                    etag: snapshot.etag.clone(),
                },
                status: Status::Updating,
                reason: "applying the requested configuration",
                ..base
            };
        }
        // A read carrying an ETag other than the one our update returned predates that
        // update (reads can lag writes) or shows another actor's change. Read again before
        // believing it; after the confirmations, accept it as the distribution's new state.
        if row.status == Status::Updating
            && let Some(expected) = &row.update_etag
            && *expected != snapshot.etag
        {
            let surprising_reads = row.enabled_reads + 1;
            if surprising_reads < policy.reenable_confirmations {
                return Decision {
                    action: Action::Recheck(Wait::Confirm),
                    status: Status::Updating,
                    reason: "read predates the update; confirming",
                    enabled_reads: surprising_reads,
                    ..base
                };
            }
        }
        if snapshot.deployed {
            return Decision {
                action: Action::Settle,
                status: Status::Deployed,
                reason: "deployed",
                enabled_reads: 0,
                ..base
            };
        }
        // An update in flight stays `updating` until it has propagated.
        let status = if row.status == Status::Updating {
            Status::Updating
        } else {
            Status::Deploying
        };
        return Decision {
            action: Action::Recheck(Wait::Deploy),
            status,
            reason: "waiting for Deployed",
            ..base
        };
    }

    if snapshot.enabled {
        if !row.disable_confirmed {
            return Decision {
                action: Action::Disable {
                    etag: snapshot.etag.clone(),
                },
                status: Status::Disabling,
                reason: "disabling before delete",
                ..base
            };
        }

        // Our disable took effect earlier. One read showing it enabled again may be a
        // stale read, so only a confirmed one means another actor re-enabled it; then the
        // service stops rather than fight over it.
        let enabled_reads = row.enabled_reads + 1;
        if enabled_reads < policy.reenable_confirmations {
            return Decision {
                action: Action::Recheck(Wait::Confirm),
                reason: "read shows Enabled=true after the disable; confirming",
                enabled_reads,
                ..base
            };
        }
        return Decision {
            action: Action::Settle,
            status: Status::Failed,
            reason: "re-enabled outside the service during deletion",
            error: Some(CallError {
                class: ErrorClass::Permanent,
                code: REENABLED_CODE.to_owned(),
                message: "The distribution was enabled again by someone else while the \
                          service was deleting it; it was left in place. Disable it and \
                          retry, or delete it again."
                    .to_owned(),
            }),
            enabled_reads,
            ..base
        };
    }

    if !snapshot.deployed {
        return Decision {
            action: Action::Recheck(Wait::Deploy),
            status: Status::Disabling,
            reason: "disabled; waiting for Deployed",
            wait_started: !row.disable_confirmed,
            disable_confirmed: true,
            enabled_reads: 0,
            ..base
        };
    }

    if row.intent == Intent::Retain {
        return Decision {
            action: Action::Settle,
            status: Status::Disabled,
            reason: "disabled and retained",
            disable_confirmed: true,
            enabled_reads: 0,
            ..base
        };
    }

    Decision {
        action: Action::Delete {
            etag: snapshot.etag.clone(),
        },
        status: Status::Deleting,
        reason: "disabled and deployed; deleting",
        disable_confirmed: true,
        enabled_reads: 0,
        ..base
    }
}

/// CloudFront no longer has the distribution. Only a row already `deleting` may have sent a
/// DeleteDistribution whose answer was lost; in any other state someone else deleted it.
fn gone(row: &Stored) -> Decision {
    let reason = if row.intent == Intent::Delete && row.status == Status::Deleting {
        "deleted"
    } else {
        "deleted outside the service"
    };
    Decision {
        action: Action::Settle,
        status: Status::Deleted,
        reason,
        failures: Failures::Reset,
        ..unchanged(row)
    }
}

/// Reads a fresh ETag after a stale one, then decides again.
fn reread(row: &Stored) -> Decision {
    Decision {
        action: Action::Read,
        ..unchanged(row)
    }
}

fn on_error(row: &Stored, error: CallError, policy: &Policy) -> Decision {
    match error.class {
        ErrorClass::Throttled => Decision {
            action: Action::Recheck(Wait::Throttled),
            ..unchanged(row)
        },
        ErrorClass::Permanent => fail(row, error, "CloudFront rejected the request"),
        ErrorClass::PermanentUnlessSoon if row.failures + 1 >= policy.short_retry_attempts => {
            fail(row, error, "CloudFront kept rejecting the request")
        }
        _ if row.failures + 1 >= policy.max_attempts => {
            let message = format!(
                "Gave up after {} failed attempts; the last one failed with {}: {}",
                row.failures + 1,
                error.code,
                error.message
            );
            fail(
                row,
                CallError {
                    class: ErrorClass::Permanent,
                    code: TOO_MANY_ATTEMPTS_CODE.to_owned(),
                    message,
                },
                "too many failed attempts",
            )
        }
        _ => Decision {
            action: Action::Recheck(Wait::Backoff),
            error: Some(error),
            failures: Failures::Increment,
            ..unchanged(row)
        },
    }
}

fn fail(row: &Stored, error: CallError, reason: &'static str) -> Decision {
    Decision {
        action: Action::Settle,
        status: Status::Failed,
        reason,
        error: Some(error),
        failures: Failures::Increment,
        ..unchanged(row)
    }
}

/// Builds a decision that changes nothing; the cases above override what they change.
fn unchanged(row: &Stored) -> Decision {
    Decision {
        action: Action::Settle,
        status: row.status,
        reason: "",
        error: None,
        failures: Failures::Keep,
        wait_started: false,
        disable_confirmed: row.disable_confirmed,
        enabled_reads: row.enabled_reads,
    }
}
