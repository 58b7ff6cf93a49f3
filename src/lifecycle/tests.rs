//! Tests for `decide`, the statuses and intents, and the recheck schedule.
//!
//! The `matrix_*` tests run `decide` on every status, intent, row flag, failure count near
//! the limits and CloudFront observation, and check one group of invariants each. The named
//! tests below them pin the exact decision for the paths that matter most.

use std::time::Duration;

use super::schedule::{self, Delays, RecheckSchedule};
use super::*;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

/// Builds a row with a CloudFront id, a create already sent, no confirmed disable and no
/// failures. Tests override the fields they need.
fn row(status: Status, intent: Intent) -> Stored {
    Stored {
        status,
        intent,
        has_cloudfront_id: true,
        create_attempted: true,
        disable_confirmed: false,
        enabled_reads: 0,
        failures: 0,
        update_pending: false,
        update_etag: None,
    }
}

fn snapshot(deployed: bool, enabled: bool, etag: &str) -> Snapshot {
    Snapshot {
        deployed,
        enabled,
        etag: etag.to_owned(),
    }
}

/// Returns a typical CloudFront error code for the class.
fn code_for(class: &ErrorClass) -> &'static str {
    match class {
        ErrorClass::Throttled => "Throttling",
        ErrorClass::Transient => "ServiceUnavailable",
        ErrorClass::StaleETag => "PreconditionFailed",
        ErrorClass::NotDisabled => "DistributionNotDisabled",
        ErrorClass::NotFound => "NoSuchDistribution",
        ErrorClass::AlreadyExists { .. } => "DistributionAlreadyExists",
        ErrorClass::PermanentUnlessSoon => "InvalidViewerCertificate",
        ErrorClass::Permanent => "AccessDenied",
    }
}

fn call_error(class: ErrorClass) -> CallError {
    CallError {
        code: code_for(&class).to_owned(),
        message: format!("test error of class {class:?}"),
        class,
    }
}

fn error_classes() -> Vec<ErrorClass> {
    vec![
        ErrorClass::Throttled,
        ErrorClass::Transient,
        ErrorClass::StaleETag,
        ErrorClass::NotDisabled,
        ErrorClass::NotFound,
        ErrorClass::AlreadyExists {
            cloudfront_id: "E2EARLIERATTEMPT".to_owned(),
        },
        ErrorClass::PermanentUnlessSoon,
        ErrorClass::Permanent,
    ]
}

/// Deployed/InProgress × Enabled true/false, each with an ETag that names the call and the
/// state, so a decision that uses the wrong snapshot's ETag is caught.
fn snapshots(call: &str) -> Vec<Snapshot> {
    let mut all = Vec::new();
    for deployed in [true, false] {
        for enabled in [true, false] {
            let etag = format!("{call}-deployed={deployed}-enabled={enabled}");
            all.push(snapshot(deployed, enabled, &etag));
        }
    }
    all
}

/// Lists every observation `decide` can receive: 1 + 4 × (4 snapshots + 8 errors) + (1 + 8) = 58.
fn observations() -> Vec<Observed> {
    let mut all = vec![Observed::Nothing];
    for snapshot in snapshots("read") {
        all.push(Observed::Read(Ok(snapshot)));
    }
    for snapshot in snapshots("created") {
        all.push(Observed::Created(Ok(snapshot)));
    }
    for snapshot in snapshots("updated") {
        all.push(Observed::Updated(Ok(snapshot)));
    }
    for snapshot in snapshots("disabled") {
        all.push(Observed::Disabled(Ok(snapshot)));
    }
    all.push(Observed::Deleted(Ok(())));
    for class in error_classes() {
        all.push(Observed::Read(Err(call_error(class.clone()))));
        all.push(Observed::Created(Err(call_error(class.clone()))));
        all.push(Observed::Updated(Err(call_error(class.clone()))));
        all.push(Observed::Disabled(Err(call_error(class.clone()))));
        all.push(Observed::Deleted(Err(call_error(class))));
    }
    all
}

/// Returns the default policy and a tight one that reaches its limits after one or two
/// failures.
fn policies() -> Vec<Policy> {
    vec![
        Policy::default(),
        Policy {
            max_attempts: 3,
            short_retry_attempts: 2,
            reenable_confirmations: 1,
        },
    ]
}

/// Returns zero and the failure counts one and two below each limit.
fn failure_counts(policy: &Policy) -> Vec<u32> {
    let mut counts = vec![
        0,
        policy.short_retry_attempts.saturating_sub(2),
        policy.short_retry_attempts.saturating_sub(1),
        policy.max_attempts.saturating_sub(2),
        policy.max_attempts.saturating_sub(1),
    ];
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// One combination of the matrix and the decision `decide` made for it.
struct Case {
    row: Stored,
    observed: Observed,
    policy: Policy,
    decision: Decision,
}

impl std::fmt::Display for Case {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "row {:?}, observed {:?}, policy {:?} -> decision {:?}",
            self.row, self.observed, self.policy, self.decision
        )
    }
}

impl Case {
    /// Returns the snapshot a successful Read, Create or Disable call returned.
    fn snapshot(&self) -> Option<&Snapshot> {
        match &self.observed {
            Observed::Read(Ok(snapshot))
            | Observed::Created(Ok(snapshot))
            | Observed::Updated(Ok(snapshot))
            | Observed::Disabled(Ok(snapshot)) => Some(snapshot),
            _ => None,
        }
    }

    /// Returns the error a failed call returned.
    fn error(&self) -> Option<&CallError> {
        match &self.observed {
            Observed::Read(Err(error))
            | Observed::Created(Err(error))
            | Observed::Updated(Err(error))
            | Observed::Disabled(Err(error))
            | Observed::Deleted(Err(error)) => Some(error),
            _ => None,
        }
    }

    fn error_class(&self) -> Option<&ErrorClass> {
        self.error().map(|error| &error.class)
    }

    fn is_error(&self) -> bool {
        self.error().is_some()
    }
}

/// Runs `check` on the decision for every combination of status, intent, row flags,
/// failure count, enabled-read count, policy and observation. Returns the number of cases.
fn for_each_case(mut check: impl FnMut(&Case)) -> usize {
    let mut count = 0;
    for policy in policies() {
        for status in Status::ALL {
            for intent in Intent::ALL {
                for has_cloudfront_id in [true, false] {
                    for create_attempted in [true, false] {
                        for disable_confirmed in [true, false] {
                            for failures in failure_counts(&policy) {
                                for enabled_reads in [0, policy.reenable_confirmations - 1] {
                                    for update_pending in [true, false] {
                                        let row = Stored {
                                            status,
                                            intent,
                                            has_cloudfront_id,
                                            create_attempted,
                                            disable_confirmed,
                                            enabled_reads,
                                            failures,
                                            update_pending,
                                            update_etag: None,
                                        };
                                        for observed in observations() {
                                            let decision = decide(&row, observed.clone(), &policy);
                                            let case = Case {
                                                row: row.clone(),
                                                observed,
                                                policy: policy.clone(),
                                                decision,
                                            };
                                            check(&case);
                                            count += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    count
}

// ---------------------------------------------------------------------------------------
// Matrix: invariants that hold for every combination
// ---------------------------------------------------------------------------------------

#[test]
fn matrix_covers_every_combination() {
    assert_eq!(observations().len(), 58, "observations per row");

    let count = for_each_case(|_| {});

    // Per policy: 9 statuses × 3 intents × 2 × 2 × 2 × 2 flags × failure counts ×
    // enabled-read counts × 58 observations. The tight policy's enabled-read counts are
    // both 0.
    let rows_default = 9 * 3 * 16 * failure_counts(&Policy::default()).len() * 2;
    let rows_tight = 9 * 3 * 16 * failure_counts(&policies()[1]).len() * 2;
    assert_eq!(count, (rows_default + rows_tight) * 58, "number of cases");
}

#[test]
fn matrix_delete_only_after_deployed_disabled_snapshot() {
    for_each_case(|case| {
        let Action::Delete { etag } = &case.decision.action else {
            return;
        };
        assert_eq!(
            case.row.intent,
            Intent::Delete,
            "{case}: Delete needs intent Delete"
        );
        // A create response goes through the same snapshot handling as a read, so a create
        // response showing Deployed and disabled also leads to a delete with its ETag.
        assert!(
            matches!(
                case.observed,
                Observed::Read(Ok(_)) | Observed::Created(Ok(_))
            ),
            "{case}: Delete needs a successful read (or create) in this step"
        );
        let snapshot = case.snapshot().expect("checked above");
        assert!(snapshot.deployed, "{case}: Delete needs Deployed");
        assert!(!snapshot.enabled, "{case}: Delete needs Enabled=false");
        assert_eq!(
            etag, &snapshot.etag,
            "{case}: Delete must send the snapshot's ETag"
        );
        assert_eq!(
            case.decision.status,
            Status::Deleting,
            "{case}: Delete moves the row to Deleting"
        );
        assert!(
            case.decision.disable_confirmed,
            "{case}: Delete implies the disable is confirmed"
        );
    });
}

#[test]
fn matrix_disable_only_for_enabled_snapshot() {
    for_each_case(|case| {
        let Action::Disable { etag } = &case.decision.action else {
            return;
        };
        assert!(
            case.row.intent.wants_disabled(),
            "{case}: Disable needs an intent that wants it disabled"
        );
        assert!(
            !case.row.disable_confirmed,
            "{case}: Disable after a confirmed disable fights another actor or repeats an update"
        );
        assert!(
            matches!(
                case.observed,
                Observed::Read(Ok(_)) | Observed::Created(Ok(_))
            ),
            "{case}: Disable needs a fresh read or create response"
        );
        let snapshot = case.snapshot().expect("checked above");
        assert!(snapshot.enabled, "{case}: Disable needs Enabled=true");
        assert_eq!(
            etag, &snapshot.etag,
            "{case}: Disable must send the snapshot's ETag"
        );
        assert_eq!(
            case.decision.status,
            Status::Disabling,
            "{case}: Disable moves the row to Disabling"
        );
    });
}

#[test]
fn matrix_create_only_without_id() {
    for_each_case(|case| {
        if case.decision.action != Action::Create {
            return;
        }
        assert!(
            !case.row.has_cloudfront_id,
            "{case}: Create with a CloudFront id would make a second distribution"
        );
        assert_eq!(
            case.observed,
            Observed::Nothing,
            "{case}: Create is only a first action"
        );
        assert!(
            case.row.intent == Intent::Keep || case.row.create_attempted,
            "{case}: a row to be deleted is created only to find an earlier attempt's distribution"
        );
        assert_eq!(
            case.decision.status,
            Status::Creating,
            "{case}: Create moves the row to Creating"
        );
    });
}

#[test]
fn matrix_keep_never_disables_or_deletes() {
    for_each_case(|case| {
        if case.row.intent != Intent::Keep {
            return;
        }
        assert!(
            !matches!(case.decision.action, Action::Disable { .. }),
            "{case}: intent Keep must not disable"
        );
        assert!(
            !matches!(case.decision.action, Action::Delete { .. }),
            "{case}: intent Keep must not delete"
        );

        // A Keep row never requests Disable or Delete, and the API never sets the intent
        // back to Keep, so the results of those calls cannot reach a Keep row.
        if matches!(case.observed, Observed::Disabled(_) | Observed::Deleted(_)) {
            return;
        }
        let moved = case.decision.status != case.row.status;
        for status in [Status::Disabling, Status::Deleting, Status::Disabled] {
            assert!(
                !(moved && case.decision.status == status),
                "{case}: intent Keep must not move the row to {status}"
            );
        }
    });
}

#[test]
fn matrix_deleted_only_when_gone() {
    for_each_case(|case| {
        if case.decision.status != Status::Deleted || case.row.status == Status::Deleted {
            return;
        }
        let not_found = matches!(case.error_class(), Some(ErrorClass::NotFound))
            && !matches!(case.observed, Observed::Created(_));
        let deleted = case.observed == Observed::Deleted(Ok(()));
        let never_created = case.observed == Observed::Nothing
            && !case.row.has_cloudfront_id
            && !case.row.create_attempted
            && case.row.intent.wants_disabled();
        assert!(
            not_found || deleted || never_created,
            "{case}: Deleted needs NotFound, a successful delete, or a row never sent to CloudFront"
        );
        assert_eq!(
            case.decision.action,
            Action::Settle,
            "{case}: Deleted settles"
        );
    });
}

#[test]
fn matrix_successful_delete_is_deleted() {
    for_each_case(|case| {
        if case.observed != Observed::Deleted(Ok(())) {
            return;
        }
        assert_eq!(
            case.decision.status,
            Status::Deleted,
            "{case}: a successful delete ends in Deleted"
        );
        assert_eq!(
            case.decision.action,
            Action::Settle,
            "{case}: a successful delete settles"
        );
    });
}

#[test]
fn matrix_throttling_never_counts() {
    for_each_case(|case| {
        if case.error_class() != Some(&ErrorClass::Throttled) {
            return;
        }
        assert_ne!(
            case.decision.failures,
            Failures::Increment,
            "{case}: throttling must not count as a failed attempt"
        );
        assert_eq!(
            case.decision.action,
            Action::Recheck(Wait::Throttled),
            "{case}: throttling waits with the throttled delay"
        );
        assert_eq!(
            case.decision.status, case.row.status,
            "{case}: throttling leaves the status alone"
        );
        assert_eq!(
            case.decision.error, None,
            "{case}: throttling is not shown as an error"
        );
    });
}

#[test]
fn matrix_failures_count_only_errors() {
    for_each_case(|case| {
        if case.decision.failures == Failures::Increment {
            assert!(
                case.is_error(),
                "{case}: only a failed call counts as a failed attempt"
            );
        }
        if case.snapshot().is_some() || case.observed == Observed::Deleted(Ok(())) {
            assert_eq!(
                case.decision.failures,
                Failures::Reset,
                "{case}: a successful call resets the failure count"
            );
        }
        if case.observed == Observed::Nothing {
            assert_eq!(
                case.decision.failures,
                Failures::Keep,
                "{case}: a first action keeps the failure count"
            );
        }
    });
}

#[test]
fn matrix_failed_carries_error() {
    for_each_case(|case| {
        if case.decision.status != Status::Failed || case.row.status == Status::Failed {
            return;
        }
        assert!(
            case.decision.error.is_some(),
            "{case}: moving to Failed must record the error"
        );
        assert_eq!(
            case.decision.action,
            Action::Settle,
            "{case}: Failed settles"
        );
    });
}

#[test]
fn matrix_error_shown_only_for_retry_or_failure() {
    for_each_case(|case| {
        if case.decision.error.is_none() {
            return;
        }
        assert!(
            case.decision.action == Action::Recheck(Wait::Backoff)
                || case.decision.status == Status::Failed,
            "{case}: an error is recorded only with a backoff retry or a failure"
        );
    });
}

#[test]
fn matrix_errors_fail_only_at_their_limit() {
    for_each_case(|case| {
        let Some(error) = case.error() else {
            return;
        };
        // A Failed row makes no calls, and an error on one leaves it Failed.
        if case.row.status == Status::Failed {
            return;
        }
        let attempt = case.row.failures + 1;
        let failed = case.decision.status == Status::Failed;
        match &error.class {
            ErrorClass::Permanent => {
                assert!(failed, "{case}: a permanent error fails the row");
                assert_eq!(
                    case.decision.error.as_ref(),
                    Some(error),
                    "{case}: a permanent error is recorded as returned"
                );
            }
            ErrorClass::PermanentUnlessSoon => {
                let at_limit = attempt >= case.policy.short_retry_attempts
                    || attempt >= case.policy.max_attempts;
                assert_eq!(
                    failed, at_limit,
                    "{case}: PermanentUnlessSoon fails exactly at the short retry limit"
                );
                if !failed {
                    assert_eq!(
                        case.decision.action,
                        Action::Recheck(Wait::Backoff),
                        "{case}: PermanentUnlessSoon below the limit backs off"
                    );
                }
            }
            ErrorClass::Transient => {
                let at_limit = attempt >= case.policy.max_attempts;
                assert_eq!(
                    failed, at_limit,
                    "{case}: a transient error fails exactly at max_attempts"
                );
                if failed {
                    let code = case
                        .decision
                        .error
                        .as_ref()
                        .map(|error| error.code.as_str());
                    assert_eq!(
                        code,
                        Some(TOO_MANY_ATTEMPTS_CODE),
                        "{case}: giving up records TOO_MANY_ATTEMPTS_CODE"
                    );
                } else {
                    assert_eq!(
                        case.decision.action,
                        Action::Recheck(Wait::Backoff),
                        "{case}: a transient error below the limit backs off"
                    );
                    assert_eq!(
                        case.decision.failures,
                        Failures::Increment,
                        "{case}: a transient error counts"
                    );
                }
            }
            _ => {
                // The other classes fail only through the attempt limit.
                if failed {
                    assert!(
                        attempt >= case.policy.max_attempts,
                        "{case}: {:?} fails only at max_attempts",
                        error.class
                    );
                }
            }
        }
    });
}

#[test]
fn matrix_settle_matches_final_status() {
    for_each_case(|case| {
        let action = &case.decision.action;
        let status = case.decision.status;
        if *action == Action::Settle {
            assert!(
                status.is_final(),
                "{case}: Settle leaves the row in a final status"
            );
        }
        if status.is_final() && status != case.row.status {
            assert_eq!(
                *action,
                Action::Settle,
                "{case}: moving into a final status settles"
            );
        }
        if *action == Action::Recheck(Wait::Deploy) {
            assert!(
                !status.is_final(),
                "{case}: waiting for Deployed needs a non-final status"
            );
        }
        if case.observed == Observed::Nothing
            && matches!(case.row.status, Status::Deleted | Status::Failed)
        {
            assert_eq!(
                *action,
                Action::Settle,
                "{case}: Deleted and Failed rows make no calls"
            );
            assert_eq!(
                status, case.row.status,
                "{case}: Deleted and Failed rows keep their status"
            );
        }
    });
}

#[test]
fn matrix_disable_confirmed_never_cleared() {
    for_each_case(|case| {
        if case.row.disable_confirmed {
            assert!(
                case.decision.disable_confirmed,
                "{case}: a confirmed disable stays confirmed"
            );
        }
    });
}

#[test]
fn matrix_wait_starts_only_after_change() {
    for_each_case(|case| {
        if !case.decision.wait_started {
            return;
        }
        let change_call = matches!(
            case.observed,
            Observed::Created(Ok(_)) | Observed::Updated(Ok(_)) | Observed::Disabled(Ok(_))
        );
        let disable_discovered = matches!(
            &case.observed,
            Observed::Read(Ok(snapshot))
                if !snapshot.deployed && !snapshot.enabled && !case.row.disable_confirmed
        );
        assert!(
            change_call || disable_discovered,
            "{case}: a new wait begins only after a create, a disable, or a read that reveals an unrecorded disable"
        );
    });
}

#[test]
fn matrix_update_only_when_pending() {
    for_each_case(|case| {
        let Action::Update { etag } = &case.decision.action else {
            return;
        };
        assert_eq!(
            case.row.intent,
            Intent::Keep,
            "{case}: Update needs intent Keep"
        );
        assert!(
            case.row.update_pending,
            "{case}: Update needs a pending update"
        );
        let snapshot = case.snapshot();
        assert!(snapshot.is_some(), "{case}: Update needs a fresh snapshot");
        assert_eq!(
            Some(etag),
            snapshot.map(|snapshot| &snapshot.etag),
            "{case}: Update uses the ETag just read"
        );
        assert_eq!(
            case.decision.status,
            Status::Updating,
            "{case}: Update shows updating"
        );
    });
}

#[test]
fn keep_with_pending_update_sends_it() {
    let row = Stored {
        update_pending: true,
        ..row(Status::Deployed, Intent::Keep)
    };

    let decision = decide(&row, read(true, true, "E7"), &Policy::default());

    assert_eq!(
        decision.action,
        Action::Update {
            etag: "E7".to_owned()
        }
    );
    assert_eq!(decision.status, Status::Updating);
}

#[test]
fn update_sent_waits_for_deployed() {
    let row = row(Status::Updating, Intent::Keep);

    let observed = Observed::Updated(Ok(snapshot(false, true, "E8")));
    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert_eq!(decision.status, Status::Updating);
    assert!(decision.wait_started);
}

#[test]
fn updating_inprogress_stays_updating() {
    let row = row(Status::Updating, Intent::Keep);

    let decision = decide(&row, read(false, true, "E8"), &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert_eq!(decision.status, Status::Updating);
}

#[test]
fn updating_deployed_settles_deployed() {
    let row = row(Status::Updating, Intent::Keep);

    let decision = decide(&row, read(true, true, "E9"), &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Deployed);
}

#[test]
fn stale_etag_on_update_rereads() {
    let row = Stored {
        update_pending: true,
        ..row(Status::Updating, Intent::Keep)
    };

    let observed = Observed::Updated(Err(call_error(ErrorClass::StaleETag)));
    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Read);
}

#[test]
fn permanent_error_on_update_fails() {
    let row = Stored {
        update_pending: true,
        ..row(Status::Updating, Intent::Keep)
    };

    let observed = Observed::Updated(Err(call_error(ErrorClass::Permanent)));
    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Failed);
    assert_eq!(
        decision.error.map(|error| error.code),
        Some("AccessDenied".to_owned())
    );
}

#[test]
fn matrix_first_read_needs_id() {
    for_each_case(|case| {
        if case.observed == Observed::Nothing && case.decision.action == Action::Read {
            assert!(
                case.row.has_cloudfront_id,
                "{case}: reading needs a CloudFront id"
            );
        }
    });
}

#[test]
fn matrix_adopt_only_after_conflict() {
    for_each_case(|case| {
        let Action::Adopt { cloudfront_id } = &case.decision.action else {
            return;
        };
        let expected = ErrorClass::AlreadyExists {
            cloudfront_id: cloudfront_id.clone(),
        };
        assert!(
            matches!(&case.observed, Observed::Created(Err(error)) if error.class == expected),
            "{case}: Adopt only takes the id from DistributionAlreadyExists on a create"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Named paths
// ---------------------------------------------------------------------------------------

fn read(deployed: bool, enabled: bool, etag: &str) -> Observed {
    Observed::Read(Ok(snapshot(deployed, enabled, etag)))
}

#[test]
fn keep_inprogress_rechecks() {
    let row = row(Status::Deploying, Intent::Keep);

    let decision = decide(&row, read(false, true, "E1"), &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert_eq!(decision.status, Status::Deploying);
    assert_eq!(decision.failures, Failures::Reset);
    assert!(!decision.wait_started);
}

#[test]
fn keep_deployed_settles() {
    let row = row(Status::Deploying, Intent::Keep);

    let decision = decide(&row, read(true, true, "E1"), &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Deployed);
    assert_eq!(decision.reason, "deployed");
    assert_eq!(decision.error, None);
}

#[test]
fn first_action_with_id_reads() {
    let row = row(Status::Deployed, Intent::Delete);

    let decision = decide(&row, Observed::Nothing, &Policy::default());

    assert_eq!(decision.action, Action::Read);
    assert_eq!(decision.status, Status::Deployed);
}

#[test]
fn failed_and_deleted_rows_settle() {
    for status in [Status::Failed, Status::Deleted] {
        let row = row(status, Intent::Delete);

        let decision = decide(&row, Observed::Nothing, &Policy::default());

        assert_eq!(decision.action, Action::Settle, "status {status}");
        assert_eq!(decision.status, status, "status {status}");
    }
}

#[test]
fn delete_enabled_disables_with_read_etag() {
    let row = row(Status::Deployed, Intent::Delete);

    let decision = decide(&row, read(true, true, "E-READ"), &Policy::default());

    assert_eq!(
        decision.action,
        Action::Disable {
            etag: "E-READ".to_owned()
        }
    );
    assert_eq!(decision.status, Status::Disabling);
    assert!(
        !decision.disable_confirmed,
        "the disable is confirmed only once it succeeds"
    );
}

#[test]
fn disable_accepted_waits_for_deploy() {
    let row = row(Status::Disabling, Intent::Delete);
    let observed = Observed::Disabled(Ok(snapshot(false, false, "E2")));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert_eq!(decision.status, Status::Disabling);
    assert!(decision.wait_started);
    assert!(decision.disable_confirmed);
    assert_eq!(decision.enabled_reads, 0);
    assert_eq!(decision.failures, Failures::Reset);
}

#[test]
fn delete_disabled_inprogress_waits() {
    let row = Stored {
        disable_confirmed: true,
        ..row(Status::Disabling, Intent::Delete)
    };

    let decision = decide(&row, read(false, false, "E2"), &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert_eq!(decision.status, Status::Disabling);
    assert!(
        !decision.wait_started,
        "the wait began when the disable was confirmed"
    );
    assert!(decision.disable_confirmed);
}

#[test]
fn delete_disabled_deployed_deletes() {
    let row = Stored {
        disable_confirmed: true,
        ..row(Status::Disabling, Intent::Delete)
    };

    let decision = decide(&row, read(true, false, "E3"), &Policy::default());

    assert_eq!(
        decision.action,
        Action::Delete {
            etag: "E3".to_owned()
        }
    );
    assert_eq!(decision.status, Status::Deleting);
    assert!(decision.disable_confirmed);
    assert_eq!(decision.enabled_reads, 0);
}

#[test]
fn retain_disabled_deployed_settles_disabled() {
    let row = Stored {
        disable_confirmed: true,
        ..row(Status::Disabling, Intent::Retain)
    };

    let decision = decide(&row, read(true, false, "E3"), &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Disabled);
    assert!(decision.disable_confirmed);
}

#[test]
fn disable_sent_then_crash_is_recognised() {
    // The worker sent the disable but stopped before recording it, so the row still has
    // status Deployed and no confirmed disable while CloudFront already propagates Enabled=false.
    let row = row(Status::Deployed, Intent::Delete);

    let decision = decide(&row, read(false, false, "E2"), &Policy::default());

    assert_eq!(decision.status, Status::Disabling);
    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert!(decision.wait_started);
    assert!(decision.disable_confirmed);
}

#[test]
fn stale_etag_on_delete_rereads() {
    let row = Stored {
        disable_confirmed: true,
        failures: 2,
        ..row(Status::Deleting, Intent::Delete)
    };
    let observed = Observed::Deleted(Err(call_error(ErrorClass::StaleETag)));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Read);
    assert_eq!(decision.status, Status::Deleting);
    assert_eq!(decision.failures, Failures::Keep);
    assert_eq!(decision.error, None);
}

#[test]
fn stale_etag_on_disable_rereads() {
    let row = row(Status::Disabling, Intent::Delete);
    let observed = Observed::Disabled(Err(call_error(ErrorClass::StaleETag)));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Read);
    assert_eq!(decision.status, Status::Disabling);
    assert_eq!(decision.failures, Failures::Keep);
    assert!(!decision.disable_confirmed);
}

#[test]
fn not_disabled_on_delete_waits() {
    let row = Stored {
        disable_confirmed: true,
        failures: 1,
        ..row(Status::Deleting, Intent::Delete)
    };
    let observed = Observed::Deleted(Err(call_error(ErrorClass::NotDisabled)));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Confirm));
    assert_eq!(decision.status, Status::Disabling);
    assert_eq!(decision.failures, Failures::Keep);
    assert_eq!(decision.error, None);
}

#[test]
fn not_found_on_read_is_deleted_outside() {
    for intent in [Intent::Keep, Intent::Retain] {
        let row = row(Status::Deployed, intent);
        let observed = Observed::Read(Err(call_error(ErrorClass::NotFound)));

        let decision = decide(&row, observed, &Policy::default());

        assert_eq!(decision.action, Action::Settle, "intent {intent:?}");
        assert_eq!(decision.status, Status::Deleted, "intent {intent:?}");
        assert_eq!(
            decision.reason, "deleted outside the service",
            "intent {intent:?}"
        );
    }
}

#[test]
fn not_found_on_read_during_delete_is_deleted() {
    let row = row(Status::Deleting, Intent::Delete);
    let observed = Observed::Read(Err(call_error(ErrorClass::NotFound)));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.status, Status::Deleted);
    assert_eq!(decision.reason, "deleted");
}

#[test]
fn not_found_on_delete_is_deleted() {
    let row = Stored {
        disable_confirmed: true,
        failures: 3,
        ..row(Status::Deleting, Intent::Delete)
    };
    let observed = Observed::Deleted(Err(call_error(ErrorClass::NotFound)));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Deleted);
    assert_eq!(decision.reason, "deleted");
    assert_eq!(decision.failures, Failures::Reset);
}

#[test]
fn delete_ok_is_deleted() {
    let row = row(Status::Deleting, Intent::Delete);

    let decision = decide(&row, Observed::Deleted(Ok(())), &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Deleted);
    assert_eq!(decision.reason, "deleted");
}

#[test]
fn already_exists_adopts_id() {
    let row = Stored {
        has_cloudfront_id: false,
        failures: 2,
        ..row(Status::Creating, Intent::Keep)
    };
    let observed = Observed::Created(Err(call_error(ErrorClass::AlreadyExists {
        cloudfront_id: "E2EARLIER".to_owned(),
    })));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(
        decision.action,
        Action::Adopt {
            cloudfront_id: "E2EARLIER".to_owned()
        }
    );
    assert_eq!(decision.status, Status::Creating);
    assert_eq!(decision.failures, Failures::Reset);
    assert_eq!(decision.error, None);
}

#[test]
fn creating_without_attempt_deleted_directly() {
    for intent in [Intent::Delete, Intent::Retain] {
        let row = Stored {
            has_cloudfront_id: false,
            create_attempted: false,
            ..row(Status::Creating, intent)
        };

        let decision = decide(&row, Observed::Nothing, &Policy::default());

        assert_eq!(decision.action, Action::Settle, "intent {intent:?}");
        assert_eq!(decision.status, Status::Deleted, "intent {intent:?}");
        assert_eq!(
            decision.reason, "deleted before it was created in CloudFront",
            "intent {intent:?}"
        );
    }
}

#[test]
fn creating_with_attempt_creates_again() {
    let row = Stored {
        has_cloudfront_id: false,
        create_attempted: true,
        ..row(Status::Creating, Intent::Delete)
    };

    let decision = decide(&row, Observed::Nothing, &Policy::default());

    assert_eq!(decision.action, Action::Create);
    assert_eq!(decision.status, Status::Creating);
}

#[test]
fn keep_without_id_creates() {
    let row = Stored {
        has_cloudfront_id: false,
        create_attempted: false,
        ..row(Status::Creating, Intent::Keep)
    };

    let decision = decide(&row, Observed::Nothing, &Policy::default());

    assert_eq!(decision.action, Action::Create);
    assert_eq!(decision.status, Status::Creating);
}

#[test]
fn reenabled_once_confirms() {
    let policy = Policy {
        reenable_confirmations: 2,
        ..Policy::default()
    };
    let row = Stored {
        disable_confirmed: true,
        enabled_reads: 0,
        ..row(Status::Disabling, Intent::Delete)
    };

    let decision = decide(&row, read(false, true, "E4"), &policy);

    assert_eq!(decision.action, Action::Recheck(Wait::Confirm));
    assert_eq!(decision.status, Status::Disabling);
    assert_eq!(decision.enabled_reads, 1);
    assert_eq!(decision.error, None);
}

#[test]
fn reenabled_twice_fails() {
    let policy = Policy {
        reenable_confirmations: 2,
        ..Policy::default()
    };
    let row = Stored {
        disable_confirmed: true,
        enabled_reads: 1,
        ..row(Status::Disabling, Intent::Delete)
    };

    let decision = decide(&row, read(false, true, "E4"), &policy);

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Failed);
    assert_eq!(decision.enabled_reads, 2);
    let error = decision
        .error
        .expect("a re-enabled distribution records an error");
    assert_eq!(error.code, REENABLED_CODE);
    assert_eq!(error.class, ErrorClass::Permanent);
}

#[test]
fn disabled_read_resets_enabled_reads() {
    let row = Stored {
        disable_confirmed: true,
        enabled_reads: 1,
        ..row(Status::Disabling, Intent::Delete)
    };

    let decision = decide(&row, read(false, false, "E5"), &Policy::default());

    assert_eq!(decision.enabled_reads, 0);
    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
}

#[test]
fn throttled_does_not_count() {
    let row = Stored {
        failures: 3,
        ..row(Status::Disabling, Intent::Delete)
    };
    let observed = Observed::Read(Err(call_error(ErrorClass::Throttled)));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Throttled));
    assert_eq!(decision.failures, Failures::Keep);
    assert_eq!(decision.status, Status::Disabling);
    assert_eq!(decision.error, None);
}

#[test]
fn throttled_at_limit_does_not_fail() {
    let policy = Policy::default();
    let row = Stored {
        failures: policy.max_attempts - 1,
        ..row(Status::Disabling, Intent::Delete)
    };
    let observed = Observed::Disabled(Err(call_error(ErrorClass::Throttled)));

    let decision = decide(&row, observed, &policy);

    assert_eq!(decision.action, Action::Recheck(Wait::Throttled));
    assert_eq!(decision.status, Status::Disabling);
}

#[test]
fn transient_backs_off_and_counts() {
    let row = Stored {
        failures: 3,
        ..row(Status::Disabling, Intent::Delete)
    };
    let error = call_error(ErrorClass::Transient);
    let observed = Observed::Read(Err(error.clone()));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Backoff));
    assert_eq!(decision.failures, Failures::Increment);
    assert_eq!(decision.status, Status::Disabling);
    assert_eq!(decision.error, Some(error));
}

#[test]
fn transient_at_limit_fails() {
    let policy = Policy::default();
    let observed = Observed::Read(Err(call_error(ErrorClass::Transient)));
    let below = Stored {
        failures: policy.max_attempts - 2,
        ..row(Status::Disabling, Intent::Delete)
    };
    let at_limit = Stored {
        failures: policy.max_attempts - 1,
        ..below.clone()
    };

    let before_limit = decide(&below, observed.clone(), &policy);
    let decision = decide(&at_limit, observed, &policy);

    assert_eq!(before_limit.action, Action::Recheck(Wait::Backoff));
    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Failed);
    assert_eq!(decision.failures, Failures::Increment);
    let error = decision.error.expect("giving up records an error");
    assert_eq!(error.code, TOO_MANY_ATTEMPTS_CODE);
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(
        error.message.contains(&policy.max_attempts.to_string()),
        "message names the attempt count: {}",
        error.message
    );
    assert!(
        error.message.contains("ServiceUnavailable"),
        "message names the last error code: {}",
        error.message
    );
}

#[test]
fn certificate_error_retried_then_fails() {
    let policy = Policy::default();
    let error = call_error(ErrorClass::PermanentUnlessSoon);
    let observed = Observed::Created(Err(error.clone()));
    let below = Stored {
        has_cloudfront_id: false,
        failures: policy.short_retry_attempts - 2,
        ..row(Status::Creating, Intent::Keep)
    };
    let at_limit = Stored {
        failures: policy.short_retry_attempts - 1,
        ..below.clone()
    };

    let retried = decide(&below, observed.clone(), &policy);
    let failed = decide(&at_limit, observed, &policy);

    assert_eq!(retried.action, Action::Recheck(Wait::Backoff));
    assert_eq!(retried.failures, Failures::Increment);
    assert_eq!(retried.status, Status::Creating);
    assert_eq!(failed.action, Action::Settle);
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(
        failed.error,
        Some(error),
        "the certificate error itself is recorded"
    );
}

#[test]
fn permanent_error_fails_with_code() {
    let error = CallError {
        class: ErrorClass::Permanent,
        code: "CNAMEAlreadyExists".to_owned(),
        message: "One or more aliases are already in use.".to_owned(),
    };
    let row = Stored {
        has_cloudfront_id: false,
        ..row(Status::Creating, Intent::Keep)
    };

    let decision = decide(
        &row,
        Observed::Created(Err(error.clone())),
        &Policy::default(),
    );

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Failed);
    assert_eq!(decision.failures, Failures::Increment);
    assert_eq!(decision.error, Some(error));
}

#[test]
fn created_ok_starts_wait() {
    let row = Stored {
        has_cloudfront_id: false,
        ..row(Status::Creating, Intent::Keep)
    };
    let observed = Observed::Created(Ok(snapshot(false, true, "E1")));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Deploy));
    assert_eq!(decision.status, Status::Deploying);
    assert!(decision.wait_started);
    assert_eq!(decision.reason, "created in CloudFront");
    assert_eq!(decision.failures, Failures::Reset);
}

#[test]
fn created_with_delete_intent_disables() {
    let row = Stored {
        has_cloudfront_id: false,
        ..row(Status::Creating, Intent::Delete)
    };
    let observed = Observed::Created(Ok(snapshot(false, true, "E-CREATED")));

    let decision = decide(&row, observed, &Policy::default());

    assert_eq!(
        decision.action,
        Action::Disable {
            etag: "E-CREATED".to_owned()
        }
    );
    assert_eq!(decision.status, Status::Disabling);
}

// ---------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------

/// A jitter close to the top of the range, because callers draw jitter from [0, 1).
const JITTER_NEAR_ONE: f64 = 0.999_999;

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

fn assert_close(actual: Duration, expected: Duration, context: &str) {
    let difference = (actual.as_secs_f64() - expected.as_secs_f64()).abs();
    assert!(
        difference < 1e-3,
        "{context}: expected about {expected:?}, got {actual:?}"
    );
}

#[test]
fn deploy_backoff_grows_then_caps() {
    let schedule = RecheckSchedule::Backoff {
        first: seconds(1.0),
        factor: 1.5,
        max: seconds(20.0),
    };
    let delays = Delays::default();
    let delay_after = |checks| schedule::delay(Wait::Deploy, &schedule, &delays, checks, 0, 0.0);

    assert_close(delay_after(0), seconds(1.0), "first check");
    assert_close(delay_after(1), seconds(1.5), "second check");
    assert_close(delay_after(2), seconds(2.25), "third check");
    for checks in 0..40 {
        assert!(
            delay_after(checks + 1) >= delay_after(checks),
            "delay shrank after {checks} checks"
        );
        assert!(
            delay_after(checks) <= seconds(20.0),
            "delay above max after {checks} checks"
        );
    }
    assert_close(delay_after(10), seconds(20.0), "capped at max");
    assert_close(delay_after(u32::MAX), seconds(20.0), "u32::MAX checks");
}

#[test]
fn deploy_fixed_is_constant() {
    let schedule = RecheckSchedule::Fixed {
        interval: seconds(15.0),
    };
    let delays = Delays::default();

    for checks in [0, 1, 5, 100, u32::MAX] {
        for jitter in [0.0, 0.5, JITTER_NEAR_ONE] {
            let delay = schedule::delay(Wait::Deploy, &schedule, &delays, checks, 3, jitter);
            assert_eq!(delay, seconds(15.0), "checks {checks}, jitter {jitter}");
        }
    }
}

#[test]
fn backoff_wait_doubles_with_failures() {
    let schedule = RecheckSchedule::default();
    let delays = Delays {
        backoff_first: seconds(2.0),
        backoff_max: seconds(300.0),
        ..Delays::default()
    };
    let at_half = |failures| schedule::delay(Wait::Backoff, &schedule, &delays, 0, failures, 0.0);

    assert_close(at_half(1), seconds(1.0), "first failure");
    assert_close(at_half(2), seconds(2.0), "second failure");
    assert_close(at_half(3), seconds(4.0), "third failure");
    assert_close(at_half(4), seconds(8.0), "fourth failure");
}

#[test]
fn backoff_wait_within_half_and_full() {
    let schedule = RecheckSchedule::default();
    let delays = Delays {
        backoff_first: seconds(2.0),
        backoff_max: seconds(300.0),
        ..Delays::default()
    };

    for failures in 1..=40 {
        let full = (2.0 * 2f64.powi(failures as i32 - 1)).min(300.0);
        for jitter in [0.0, 0.5, JITTER_NEAR_ONE] {
            let delay = schedule::delay(Wait::Backoff, &schedule, &delays, 0, failures, jitter);
            let context = format!("failures {failures}, jitter {jitter}");
            assert!(
                delay >= seconds(full / 2.0),
                "{context}: {delay:?} below half of {full}s"
            );
            assert!(delay <= seconds(full), "{context}: {delay:?} above {full}s");
        }
    }
    let low = schedule::delay(Wait::Backoff, &schedule, &delays, 0, 3, 0.0);
    let high = schedule::delay(Wait::Backoff, &schedule, &delays, 0, 3, JITTER_NEAR_ONE);
    assert_close(low, seconds(4.0), "jitter 0 gives half");
    assert_close(high, seconds(8.0), "jitter near 1 gives the full delay");
}

#[test]
fn backoff_wait_caps_at_backoff_max() {
    let schedule = RecheckSchedule::default();
    let delays = Delays {
        backoff_first: seconds(2.0),
        backoff_max: seconds(300.0),
        ..Delays::default()
    };

    for failures in [9, 10, 20, 31, 100, u32::MAX] {
        let delay = schedule::delay(
            Wait::Backoff,
            &schedule,
            &delays,
            0,
            failures,
            JITTER_NEAR_ONE,
        );
        assert!(
            delay <= seconds(300.0),
            "failures {failures}: {delay:?} above backoff_max"
        );
        assert_close(delay, seconds(300.0), &format!("failures {failures}"));
    }
}

#[test]
fn throttled_wait_within_half_and_one_and_half() {
    let schedule = RecheckSchedule::default();
    let delays = Delays {
        throttled: seconds(10.0),
        ..Delays::default()
    };

    for jitter in [-1.0, 0.0, 0.25, 0.5, JITTER_NEAR_ONE, 2.0] {
        let delay = schedule::delay(Wait::Throttled, &schedule, &delays, 0, 0, jitter);
        assert!(delay >= seconds(5.0), "jitter {jitter}: {delay:?} below 5s");
        assert!(
            delay <= seconds(15.0),
            "jitter {jitter}: {delay:?} above 15s"
        );
    }
    let low = schedule::delay(Wait::Throttled, &schedule, &delays, 0, 0, 0.0);
    assert_close(low, seconds(5.0), "jitter 0");
}

#[test]
fn confirm_wait_is_constant() {
    let schedule = RecheckSchedule::default();
    let delays = Delays {
        confirm: seconds(5.0),
        ..Delays::default()
    };

    for (checks, failures, jitter) in [
        (0, 0, 0.0),
        (7, 3, 0.5),
        (u32::MAX, u32::MAX, JITTER_NEAR_ONE),
    ] {
        let delay = schedule::delay(Wait::Confirm, &schedule, &delays, checks, failures, jitter);
        assert_eq!(
            delay,
            seconds(5.0),
            "checks {checks}, failures {failures}, jitter {jitter}"
        );
    }
}

#[test]
fn schedule_parses_fixed() {
    let parsed = "fixed:15".parse::<RecheckSchedule>();

    assert_eq!(
        parsed,
        Ok(RecheckSchedule::Fixed {
            interval: seconds(15.0)
        })
    );
}

#[test]
fn schedule_parses_backoff() {
    let parsed = "backoff:1,1.5,20".parse::<RecheckSchedule>();

    assert_eq!(
        parsed,
        Ok(RecheckSchedule::Backoff {
            first: seconds(1.0),
            factor: 1.5,
            max: seconds(20.0),
        })
    );
}

#[test]
fn schedule_rejects_invalid_text() {
    for text in [
        "fixed:0",
        "fixed:-1",
        "backoff:5,1.5,1",
        "backoff:1,0.5,20",
        "nonsense",
        "fixed:abc",
        "fixed:",
        "fixed:1,2",
        "backoff:1,1.5",
        "fixed:inf",
        "fixed:NaN",
        "weekly:5",
    ] {
        let parsed = text.parse::<RecheckSchedule>();
        let error = parsed.expect_err(text);
        assert!(
            error.contains("invalid recheck schedule"),
            "{text}: error {error:?} does not say what is invalid"
        );
        assert!(
            error.contains(text),
            "{text}: error {error:?} does not name the value"
        );
    }
}

#[test]
fn schedule_rejects_huge_seconds() {
    // `RECHECK_SCHEDULE=fixed:1e20` should be a clean parse error, not a panic at startup.
    for text in ["fixed:1e20", "backoff:1,1.5,1e20", "backoff:1e20,1,1e21"] {
        let parsed = std::panic::catch_unwind(|| text.parse::<RecheckSchedule>());
        let parsed = parsed.unwrap_or_else(|_| panic!("{text}: parsing panicked"));
        assert!(parsed.is_err(), "{text}: accepted {parsed:?}");
    }
}

#[test]
fn schedule_rejects_zero_duration() {
    // `fixed:0` is rejected, but a positive value below one nanosecond becomes
    // Duration::ZERO, so rows waiting for Deployed would be rechecked without pause.
    for text in ["fixed:1e-10", "backoff:1e-10,1,20"] {
        let parsed = text.parse::<RecheckSchedule>();
        assert!(parsed.is_err(), "{text}: accepted {parsed:?}");
    }
}

#[test]
fn schedule_display_round_trips() {
    for text in [
        "fixed:15",
        "fixed:0.5",
        "backoff:1,1.5,20",
        "backoff:0.25,2,600",
    ] {
        let parsed: RecheckSchedule = text.parse().expect(text);

        let displayed = parsed.to_string();

        assert_eq!(displayed, text, "Display of {parsed:?}");
        assert_eq!(displayed.parse::<RecheckSchedule>(), Ok(parsed), "{text}");
    }
    let default = RecheckSchedule::default();
    assert_eq!(default.to_string().parse::<RecheckSchedule>(), Ok(default));
}

fn adaptive(dense: f64, max: f64) -> RecheckSchedule {
    RecheckSchedule::Adaptive {
        dense: seconds(dense),
        max: seconds(max),
    }
}

fn window(low: f64, high: f64) -> schedule::LearnedWindow {
    schedule::LearnedWindow {
        low: seconds(low),
        high: seconds(high),
    }
}

/// The adaptive delay with jitter 0.5, which leaves the planned delay unchanged.
fn adaptive_delay_at(
    schedule: &RecheckSchedule,
    learned: Option<schedule::LearnedWindow>,
    elapsed: f64,
    checks: u32,
) -> Duration {
    let progress = schedule::WaitProgress {
        checks,
        elapsed: seconds(elapsed),
        window: learned,
    };
    schedule::delay_in_wait(
        Wait::Deploy,
        schedule,
        &Delays::default(),
        &progress,
        0,
        0.5,
    )
}

#[test]
fn adaptive_without_window_falls_back() {
    let schedule = adaptive(12.0, 60.0);
    let fallback = schedule::ADAPTIVE_FALLBACK;

    for checks in [0, 1, 2, 5, 10, 100] {
        let adaptive = adaptive_delay_at(&schedule, None, 100.0, checks);
        let expected = schedule::delay(Wait::Deploy, &fallback, &Delays::default(), checks, 0, 0.5);
        assert_eq!(adaptive, expected, "checks {checks}");
    }
    assert_close(
        adaptive_delay_at(&schedule, None, 0.0, 0),
        seconds(1.0),
        "first check",
    );
}

#[test]
fn adaptive_first_check_at_low_quantile() {
    let schedule = adaptive(12.0, 60.0);
    let learned = Some(window(120.0, 400.0));

    assert_close(
        adaptive_delay_at(&schedule, learned, 0.0, 0),
        seconds(120.0),
        "from the start",
    );
    assert_close(
        adaptive_delay_at(&schedule, learned, 30.0, 1),
        seconds(90.0),
        "30 s in",
    );
    assert_close(
        adaptive_delay_at(&schedule, learned, 113.0, 1),
        seconds(7.0),
        "more than 5% before low",
    );
    assert_close(
        adaptive_delay_at(&schedule, learned, 114.5, 1),
        seconds(12.0),
        "a first check jittered to less than 5% before low is dense from there",
    );
    assert_close(
        adaptive_delay_at(&schedule, learned, 119.5, 1),
        seconds(12.0),
        "just before low",
    );
}

#[test]
fn adaptive_dense_inside_window() {
    let schedule = adaptive(12.0, 60.0);
    let learned = Some(window(120.0, 400.0));

    for elapsed in [120.0, 121.0, 200.0, 300.0, 399.9] {
        let delay = adaptive_delay_at(&schedule, learned, elapsed, 5);
        assert_close(delay, seconds(12.0), &format!("elapsed {elapsed}"));
    }
}

#[test]
fn adaptive_grows_geometrically_after_window() {
    let schedule = adaptive(12.0, 60.0);
    let learned = Some(window(120.0, 400.0));
    let delay_at = |elapsed| adaptive_delay_at(&schedule, learned, elapsed, 20);

    assert_close(delay_at(400.0), seconds(12.0), "at the high quantile");
    assert_close(
        delay_at(448.0),
        seconds(12.0),
        "dense until four times dense past it",
    );
    assert_close(
        delay_at(480.0),
        seconds(20.0),
        "a quarter of the time past it",
    );
    assert_close(
        delay_at(500.0),
        seconds(25.0),
        "1.25 times the previous delay",
    );
    assert_close(delay_at(640.0), seconds(60.0), "reaches max");
    assert_close(delay_at(5000.0), seconds(60.0), "capped at max");
    assert_close(delay_at(86_400.0 * 10.0), seconds(60.0), "ten days in");

    let mut elapsed = 400.0;
    let mut previous = Duration::ZERO;
    for _ in 0..50 {
        let delay = delay_at(elapsed);
        assert!(delay >= previous, "delay shrank at {elapsed} s");
        assert!(delay <= seconds(60.0), "delay above max at {elapsed} s");
        previous = delay;
        elapsed += delay.as_secs_f64();
    }
}

#[test]
fn adaptive_dense_above_max_uses_max() {
    let schedule = RecheckSchedule::Adaptive {
        dense: seconds(90.0),
        max: seconds(30.0),
    };
    let learned = Some(window(10.0, 100.0));

    assert_close(
        adaptive_delay_at(&schedule, learned, 50.0, 3),
        seconds(30.0),
        "inside",
    );
    assert_close(
        adaptive_delay_at(&schedule, learned, 500.0, 3),
        seconds(30.0),
        "after",
    );
}

#[test]
fn adaptive_jitter_within_five_percent() {
    let schedule = adaptive(12.0, 60.0);
    let learned = Some(window(120.0, 400.0));
    let delays = Delays::default();

    for (elapsed, planned) in [(0.0, 120.0), (200.0, 12.0), (1000.0, 60.0)] {
        for jitter in [-1.0, 0.0, 0.25, 0.5, JITTER_NEAR_ONE, 2.0] {
            let progress = schedule::WaitProgress {
                checks: 3,
                elapsed: seconds(elapsed),
                window: learned,
            };
            let delay =
                schedule::delay_in_wait(Wait::Deploy, &schedule, &delays, &progress, 0, jitter);
            let context = format!("elapsed {elapsed}, jitter {jitter}");
            assert!(
                delay >= seconds(planned * 0.95 - 1e-9),
                "{context}: {delay:?} too short"
            );
            assert!(
                delay <= seconds(planned * 1.05 + 1e-9),
                "{context}: {delay:?} too long"
            );
        }
    }
}

#[test]
fn adaptive_leaves_other_waits_alone() {
    let schedule = adaptive(12.0, 60.0);
    let delays = Delays::default();
    let progress = schedule::WaitProgress {
        checks: 2,
        elapsed: seconds(300.0),
        window: Some(window(120.0, 400.0)),
    };

    let confirm = schedule::delay_in_wait(Wait::Confirm, &schedule, &delays, &progress, 0, 0.5);
    let backoff = schedule::delay_in_wait(Wait::Backoff, &schedule, &delays, &progress, 2, 0.0);

    assert_eq!(confirm, delays.confirm);
    assert_close(backoff, seconds(2.0), "second failure at half");
}

#[test]
fn learned_window_needs_enough_observations() {
    let min = schedule::MIN_OBSERVATIONS;

    assert_eq!(
        schedule::LearnedWindow::from_quantiles(min - 1, 100.0, 300.0),
        None
    );
    assert_eq!(
        schedule::LearnedWindow::from_quantiles(0, 100.0, 300.0),
        None
    );
    assert_eq!(
        schedule::LearnedWindow::from_quantiles(min, 100.0, 300.0),
        Some(window(100.0, 300.0))
    );
}

#[test]
fn learned_window_rejects_unusable_values() {
    for (low, high) in [(f64::NAN, 300.0), (100.0, f64::INFINITY), (-1.0, 300.0)] {
        let learned = schedule::LearnedWindow::from_quantiles(100, low, high);
        assert_eq!(learned, None, "low {low}, high {high}");
    }
    assert_eq!(
        schedule::LearnedWindow::from_quantiles(100, 300.0, 100.0),
        Some(window(300.0, 300.0)),
        "high below low is raised to low"
    );
}

#[test]
fn learned_window_likely_from_low() {
    let learned = window(120.0, 400.0);

    assert!(!learned.is_likely_done(seconds(119.0)));
    assert!(learned.is_likely_done(seconds(120.0)));
    assert!(learned.is_likely_done(seconds(1000.0)));
}

/// The empirical quantile as Postgres's `percentile_disc` returns it: the first value, in
/// ascending order, whose cumulative share reaches `quantile`.
fn percentile_disc(values: &[f64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Subtract a little, because 0.97 * 100 is 97.00000000000001 in floating point.
    let position = (quantile * sorted.len() as f64 - 1e-9).ceil().max(1.0) as usize;
    sorted[position - 1]
}

/// Returns `count` distinct durations from 100 s up, unevenly spaced and out of order.
fn spread(count: usize) -> Vec<f64> {
    (0..count)
        .map(|index| 100.0 + ((index * 37) % count) as f64 * 3.5 + (index % 3) as f64 * 0.25)
        .collect()
}

fn sample(finished: &[f64], open: &[f64]) -> schedule::WaitSample {
    schedule::WaitSample::from_durations(finished, open)
}

#[test]
fn product_limit_uncensored_is_empirical() {
    for count in [1, 2, 20, 33, 100, 300] {
        let finished = spread(count);
        let steps = sample(&finished, &[]).steps;
        for quantile in [0.0, 0.01, 0.03, 0.25, 0.5, 0.9, 0.97, 0.99, 1.0] {
            assert_eq!(
                schedule::product_limit_quantile(&steps, quantile),
                Some(percentile_disc(&finished, quantile)),
                "{count} waits, quantile {quantile}"
            );
        }
    }
}

#[test]
fn product_limit_exact_levels() {
    // 100 waits of 1..=100 s: the 3rd and 97th percentiles are the 3rd and 97th values, even
    // though 0.97 is not exact as a product of fractions.
    let finished: Vec<f64> = (1..=100).map(f64::from).collect();
    let steps = sample(&finished, &[]).steps;

    assert_eq!(schedule::product_limit_quantile(&steps, 0.03), Some(3.0));
    assert_eq!(schedule::product_limit_quantile(&steps, 0.97), Some(97.0));
}

#[test]
fn product_limit_ties_count_together() {
    let finished = [10.0, 20.0, 20.0, 20.0, 30.0];
    let steps = sample(&finished, &[15.0, 20.0]).steps;

    assert_eq!(steps.len(), 3, "one step per distinct duration: {steps:?}");
    assert_eq!(steps[1].seconds, 20.0);
    assert_eq!(steps[1].ended, 3);
    assert_eq!(
        steps[1].at_risk, 5,
        "four finished at 20 s or later and one open exactly 20 s"
    );
    // Survival: 1 - 1/7 after 10 s, then (6/7) * (1 - 3/5) = 0.343 after 20 s.
    assert_eq!(schedule::product_limit_quantile(&steps, 0.5), Some(20.0));
    assert_eq!(schedule::product_limit_quantile(&steps, 0.1), Some(10.0));
    assert_eq!(schedule::product_limit_quantile(&steps, 0.7), Some(30.0));
}

#[test]
fn product_limit_censoring_raises_quantiles() {
    // 100 finished waits of 1..=100 s and 100 open waits aged 50 s: from 50 s on, half of
    // the waits at risk are open, so each later end removes a smaller share.
    let finished: Vec<f64> = (1..=100).map(f64::from).collect();
    let open = vec![50.0; 100];
    let censored = sample(&finished, &open).steps;
    let plain = sample(&finished, &[]).steps;

    assert_eq!(
        schedule::product_limit_quantile(&censored, 0.03),
        Some(6.0),
        "3% of all 200 waits, not of the 100 finished"
    );
    let median = schedule::product_limit_quantile(&censored, 0.5).unwrap();
    let plain_median = schedule::product_limit_quantile(&plain, 0.5).unwrap();
    assert!(
        median > plain_median,
        "median {median} s not above the uncensored {plain_median} s"
    );
}

#[test]
fn product_limit_censoring_after_last_end() {
    // Open waits older than every finished one are at risk at every step, and the share
    // they leave after the last end is what the estimate cannot place.
    let finished: Vec<f64> = (1..=100).map(f64::from).collect();
    let steps = sample(&finished, &[500.0, 600.0]).steps;

    assert_eq!(steps.last().unwrap().at_risk, 3);
    assert_eq!(schedule::product_limit_quantile(&steps, 0.5), Some(51.0));
    assert_eq!(
        schedule::product_limit_quantile(&steps, 0.99),
        None,
        "two open waits of 102 leave 2% unknown past 100 s"
    );
    assert_eq!(schedule::product_limit_quantile(&steps, 0.97), Some(99.0));
}

#[test]
fn product_limit_open_younger_than_all_ends() {
    // Waits that started a moment ago are at risk only before every finished duration, so
    // they change no step.
    let finished = spread(300);
    let open = vec![5.0; 10_000];

    assert_eq!(sample(&finished, &open).steps, sample(&finished, &[]).steps);
}

#[test]
fn product_limit_skips_garbage() {
    let step = |seconds, ended, at_risk| schedule::SurvivalStep {
        seconds,
        ended,
        at_risk,
    };
    let clean = [step(10.0, 1, 4), step(20.0, 1, 3), step(30.0, 2, 2)];
    let mut noisy = vec![
        step(f64::NAN, 1, 4),
        step(f64::INFINITY, 1, 1),
        step(-5.0, 1, 9),
        step(12.0, 0, 3),
        step(14.0, 1, 0),
        step(16.0, -2, 3),
    ];
    noisy.extend(clean.iter().rev());

    for quantile in [0.1, 0.3, 0.5, 0.8, 1.0] {
        assert_eq!(
            schedule::product_limit_quantile(&noisy, quantile),
            schedule::product_limit_quantile(&clean, quantile),
            "quantile {quantile}"
        );
    }
    assert_eq!(schedule::product_limit_quantile(&clean, f64::NAN), None);
    assert_eq!(schedule::product_limit_quantile(&[], 0.5), None);
    assert_eq!(
        schedule::product_limit_quantile(&[step(7.0, 5, 2)], 0.99),
        Some(7.0),
        "more ended than at risk counts as all ending"
    );

    let from_garbage = sample(
        &[f64::NAN, -1.0, f64::INFINITY, 3.0],
        &[f64::NAN, -4.0, 2.0],
    );
    assert_eq!(from_garbage.finished, 1);
    assert_eq!(from_garbage.oldest_open, Some(2.0));
    assert_eq!(from_garbage.steps, vec![step(3.0, 1, 1)]);
}

#[test]
fn learned_estimate_without_open_waits() {
    let finished = spread(300);
    let learned = schedule::LearnedWindow::estimate(&sample(&finished, &[])).unwrap();

    assert_eq!(
        learned,
        window(
            percentile_disc(&finished, schedule::LOW_QUANTILE),
            percentile_disc(&finished, schedule::HIGH_QUANTILE)
        )
    );
}

#[test]
fn learned_estimate_counts_finished_waits() {
    let min = schedule::MIN_OBSERVATIONS as usize;
    let open = vec![50.0; 1000];

    assert_eq!(
        schedule::LearnedWindow::estimate(&sample(&spread(min - 1), &open)),
        None,
        "open waits do not count toward the minimum"
    );
    assert!(schedule::LearnedWindow::estimate(&sample(&spread(min), &[])).is_some());
    assert_eq!(
        schedule::LearnedWindow::estimate(&schedule::WaitSample::default()),
        None
    );

    let only_garbage = schedule::WaitSample {
        steps: vec![schedule::SurvivalStep {
            seconds: f64::NAN,
            ended: 100,
            at_risk: 100,
        }],
        finished: 100,
        oldest_open: Some(10.0),
    };
    assert_eq!(schedule::LearnedWindow::estimate(&only_garbage), None);
}

#[test]
fn learned_estimate_waits_for_open_tail() {
    // Half of a burst has finished within 150..=250 s and the other half is still open at
    // 400 s: the high quantile is not reached, so the window runs to the oldest open wait
    // instead of ending among the finished ones.
    let finished: Vec<f64> = (0..200).map(|index| 150.0 + index as f64 * 0.5).collect();
    let open = vec![400.0; 200];
    let learned = schedule::LearnedWindow::estimate(&sample(&finished, &open)).unwrap();

    assert_eq!(learned.high, seconds(400.0));
    assert_eq!(
        learned.low,
        seconds(155.5),
        "the 12th finished wait, 3% of all 400"
    );

    let finished_only = schedule::LearnedWindow::estimate(&sample(&finished, &[])).unwrap();
    assert!(finished_only.high < seconds(250.0));
}

#[test]
fn learned_estimate_tail_reached_despite_open() {
    // A few stuck waits do not hold the window open once 97% are known to have ended.
    let finished: Vec<f64> = (1..=300).map(f64::from).collect();
    let open = [5000.0, 6000.0];
    let learned = schedule::LearnedWindow::estimate(&sample(&finished, &open)).unwrap();

    assert!(
        learned.high <= seconds(300.0),
        "high {:?} beyond the finished waits",
        learned.high
    );
}

#[test]
fn learned_estimate_low_not_reached() {
    // 20 short waits finished while 2000 older ones are still open: fewer than 3% are known
    // to end before the longest finished wait, so the first check comes no later than it.
    let finished: Vec<f64> = (1..=20).map(|index| f64::from(index) * 10.0).collect();
    let open = vec![900.0; 2000];
    let learned = schedule::LearnedWindow::estimate(&sample(&finished, &open)).unwrap();

    assert_eq!(learned.low, seconds(200.0));
    assert_eq!(learned.high, seconds(900.0));
}

#[test]
fn learned_estimate_ignores_unusable_oldest_open() {
    let finished: Vec<f64> = (0..40).map(|index| 100.0 + f64::from(index)).collect();
    for oldest_open in [f64::NAN, f64::INFINITY, -3.0] {
        // Half of the waits are open past the last end, so the high quantile is not reached.
        let mut learned = sample(&finished, &vec![200.0; 40]);
        learned.oldest_open = Some(oldest_open);
        let window = schedule::LearnedWindow::estimate(&learned).unwrap();
        assert_eq!(
            window.high,
            seconds(139.0),
            "oldest open {oldest_open}: the longest finished wait"
        );
    }
}

#[test]
fn schedule_parses_adaptive() {
    assert_eq!(
        "adaptive".parse::<RecheckSchedule>(),
        Ok(adaptive(13.0, 60.0))
    );
    assert_eq!(
        "adaptive:10,90".parse::<RecheckSchedule>(),
        Ok(adaptive(10.0, 90.0))
    );
    assert_eq!(RecheckSchedule::default(), adaptive(13.0, 60.0));
}

#[test]
fn schedule_rejects_invalid_adaptive() {
    for text in [
        "adaptive:",
        "adaptive:12",
        "adaptive:60,12",
        "adaptive:0,60",
        "adaptive:12,1e20",
        "adaptive:12,60,5",
        "adaptive:abc,60",
        "adaptives",
    ] {
        let error = text.parse::<RecheckSchedule>().expect_err(text);
        assert!(
            error.contains("invalid recheck schedule"),
            "{text}: {error:?}"
        );
        assert!(
            error.contains(text),
            "{text}: {error:?} does not name the value"
        );
    }
}

#[test]
fn schedule_displays_adaptive() {
    for text in ["adaptive:12,60", "adaptive:0.5,30"] {
        let parsed: RecheckSchedule = text.parse().expect(text);

        assert_eq!(parsed.to_string(), text);
    }
    assert_eq!(RecheckSchedule::default().to_string(), "adaptive:13,60");
}

// ---------------------------------------------------------------------------------------
// Status and intent
// ---------------------------------------------------------------------------------------

#[test]
fn status_parse_round_trips() {
    for status in Status::ALL {
        assert_eq!(Status::parse(status.as_str()), Some(status), "{status:?}");
        assert_eq!(status.to_string(), status.as_str(), "{status:?}");
    }
    assert_eq!(Status::parse("Deployed"), None, "parsing is case-sensitive");
    assert_eq!(Status::parse(""), None);
}

#[test]
fn intent_parse_round_trips() {
    for intent in Intent::ALL {
        assert_eq!(Intent::parse(intent.as_str()), Some(intent), "{intent:?}");
    }
    assert_eq!(Intent::parse("destroy"), None);
}

#[test]
fn status_final_exactly_settled_statuses() {
    let expected_final = [
        Status::Deployed,
        Status::Deleted,
        Status::Disabled,
        Status::Failed,
    ];
    for status in Status::ALL {
        assert_eq!(
            status.is_final(),
            expected_final.contains(&status),
            "{status:?}"
        );
    }
}

#[test]
fn intent_wants_disabled_except_keep() {
    assert!(!Intent::Keep.wants_disabled());
    assert!(Intent::Delete.wants_disabled());
    assert!(Intent::Retain.wants_disabled());
}

#[test]
fn read_older_than_update_is_confirmed() {
    let row = Stored {
        update_etag: Some("E-new".to_owned()),
        ..row(Status::Updating, Intent::Keep)
    };

    let decision = decide(&row, read(true, true, "E-old"), &Policy::default());

    assert_eq!(decision.action, Action::Recheck(Wait::Confirm));
    assert_eq!(decision.status, Status::Updating);
    assert_eq!(decision.enabled_reads, 1);
}

#[test]
fn read_with_update_etag_settles() {
    let row = Stored {
        update_etag: Some("E-new".to_owned()),
        ..row(Status::Updating, Intent::Keep)
    };

    let decision = decide(&row, read(true, true, "E-new"), &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Deployed);
}

#[test]
fn confirmed_other_etag_is_accepted() {
    let row = Stored {
        update_etag: Some("E-new".to_owned()),
        enabled_reads: 1,
        ..row(Status::Updating, Intent::Keep)
    };

    let decision = decide(&row, read(true, true, "E-other"), &Policy::default());

    assert_eq!(decision.action, Action::Settle);
    assert_eq!(decision.status, Status::Deployed);
    assert_eq!(decision.enabled_reads, 0);
}
