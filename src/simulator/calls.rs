//! The record of every CloudFront call the simulator served.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::faults::{LostResponseMode, Operation};
use super::state::DistributionStatus;

/// One CloudFront API call as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallRecord {
    /// Position in the log, starting at 1.
    pub sequence: u64,
    pub operation: Operation,
    /// The distribution the call addressed; for creates, the one it created.
    pub distribution_id: Option<String>,
    pub if_match: Option<String>,
    /// The HTTP status the operation produced. When the response was lost this is
    /// the status the client would have seen; `response_lost` records what it got instead.
    pub http_status: u16,
    pub error_code: Option<String>,
    pub time: DateTime<Utc>,
    /// `Enabled` of the addressed distribution when the call arrived, before any change.
    pub enabled: Option<bool>,
    /// `Status` of the addressed distribution when the call arrived, before any change.
    pub status: Option<DistributionStatus>,
    pub response_lost: Option<LostResponseMode>,
    /// For a create or update that changed the distribution, when that change turns
    /// Deployed (real time), so a client's detection lag can be measured.
    pub deployed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct CallLog {
    records: Vec<CallRecord>,
    counts: BTreeMap<Operation, u64>,
}

impl CallLog {
    /// Appends `record`, numbering it.
    pub fn record(&mut self, mut record: CallRecord) {
        record.sequence = self.records.len() as u64 + 1;
        *self.counts.entry(record.operation).or_default() += 1;
        self.records.push(record);
    }

    pub fn records(&self) -> Vec<CallRecord> {
        self.records.clone()
    }

    pub fn counts(&self) -> BTreeMap<Operation, u64> {
        self.counts.clone()
    }
}
