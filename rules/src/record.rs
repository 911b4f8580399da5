//! The user's record: how often they logged in and the metadata steps keep
//! about them, and how it is updated safely when logins race.
//!
//! The record lives in a [`RecordStore`], a compare-and-swap cell per user.
//! Envoy's shared data is one such store (all workers of one Envoy); a
//! store shared by several Envoys (etcd) offers the same operations over
//! HTTP. [`update`] is the one read-modify-write loop: it re-reads and
//! re-applies a change when another worker wrote first, a bounded number of
//! times, so that two logins at once are both counted.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;

/// What Rulegate keeps about a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Interactive logins, this one included once counted.
    #[serde(default)]
    pub logins_count: u64,
    /// Facts Rulegate records about the user (`recordedAsLead`).
    #[serde(default)]
    pub app_metadata: Map<String, Value>,
    /// Data gathered for the user (enrichment results).
    #[serde(default)]
    pub user_metadata: Map<String, Value>,
    /// When a CRM lead was queued (Unix seconds), so that logins close
    /// together do not queue it twice while it is on its way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_queued_at: Option<u64>,
    /// Which login queued it (its `logins_count`): of two logins racing to
    /// queue the lead, the one whose number is stored sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_queued_by: Option<u64>,
}

/// How long a queued lead keeps other logins from queueing it again.
pub const LEAD_HOLD_S: u64 = 3_600;

/// A change to a record. Applying it again after a conflict gives the same
/// result on top of whatever the other writer stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordChange {
    /// Count one more interactive login.
    pub count_login: bool,
    /// `app_metadata` fields to set; `null` removes the field.
    pub app_metadata: Map<String, Value>,
    /// `user_metadata` fields to set; `null` removes the field.
    pub user_metadata: Map<String, Value>,
    /// Set (`Some(Some(t))`) or clear (`Some(None)`) the lead marker. A
    /// marker is only set when no other login holds a fresh one.
    pub lead_queued_at: Option<Option<u64>>,
    /// The login setting the marker.
    pub lead_queued_by: Option<u64>,
}

impl RecordChange {
    /// Whether applying it changes nothing.
    pub fn is_empty(&self) -> bool {
        !self.count_login
            && self.app_metadata.is_empty()
            && self.user_metadata.is_empty()
            && self.lead_queued_at.is_none()
    }

    /// Adds `other`'s changes to this one (later values win).
    pub fn merge(&mut self, other: RecordChange) {
        self.count_login |= other.count_login;
        self.app_metadata.extend(other.app_metadata);
        self.user_metadata.extend(other.user_metadata);
        if other.lead_queued_at.is_some() {
            self.lead_queued_at = other.lead_queued_at;
            self.lead_queued_by = other.lead_queued_by;
        }
    }
}

impl UserRecord {
    /// Applies `change` in place.
    pub fn apply(&mut self, change: &RecordChange) {
        if change.count_login {
            self.logins_count = self.logins_count.saturating_add(1);
        }
        merge_fields(&mut self.app_metadata, &change.app_metadata);
        merge_fields(&mut self.user_metadata, &change.user_metadata);
        match change.lead_queued_at {
            Some(Some(at)) => {
                let recorded = self.app_metadata.get("recordedAsLead") == Some(&Value::Bool(true));
                let held_by_another = self
                    .lead_queued_at
                    .is_some_and(|held| at < held + LEAD_HOLD_S)
                    && self.lead_queued_by != change.lead_queued_by;
                if !recorded && !held_by_another {
                    self.lead_queued_at = Some(at);
                    self.lead_queued_by = change.lead_queued_by;
                }
            }
            Some(None) => {
                self.lead_queued_at = None;
                self.lead_queued_by = None;
            }
            None => {}
        }
    }
}

fn merge_fields(target: &mut Map<String, Value>, fields: &Map<String, Value>) {
    for (name, value) in fields {
        if value.is_null() {
            target.remove(name);
        } else {
            target.insert(name.clone(), value.clone());
        }
    }
}

/// A compare-and-swap cell per key.
pub trait RecordStore {
    /// The stored bytes and their version; `(None, None)` when absent.
    fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Error>;
    /// Stores `value` if the version is still `version` (`None`: the key
    /// was absent when read).
    fn write(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<(), WriteError>;
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Another writer changed the record since it was read: read again.
    Conflict,
    /// The store failed; the message names why.
    Failed(String),
}

/// How many times a change is re-applied after conflicts before giving up.
pub const MAX_ATTEMPTS: u32 = 16;

/// The store key of a user's record.
pub fn key_of(user_id: &str) -> String {
    format!("rulegate.user.{user_id}")
}

/// Applies `change` to the user's record and returns the record as stored.
///
/// An unreadable record (written by a future version, or damaged) is
/// replaced rather than blocking every login of that user; that is logged
/// by the caller through the returned `Err` only when the store itself
/// fails.
pub fn update(
    store: &dyn RecordStore,
    user_id: &str,
    change: &RecordChange,
) -> Result<UserRecord, Error> {
    let key = key_of(user_id);
    for _ in 0..MAX_ATTEMPTS {
        let (stored, version) = store.read(&key)?;
        let mut record: UserRecord = stored
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if change.is_empty() {
            return Ok(record);
        }
        record.apply(change);
        let bytes = serde_json::to_vec(&record).map_err(|err| Error::Store(err.to_string()))?;
        match store.write(&key, &bytes, version) {
            Ok(()) => return Ok(record),
            Err(WriteError::Conflict) => continue,
            Err(WriteError::Failed(reason)) => return Err(Error::Store(reason)),
        }
    }
    Err(Error::Store(format!(
        "record of user {user_id} changed under {MAX_ATTEMPTS} attempts in a row"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// A store whose writes conflict a set number of times, as if another
    /// worker wrote just before.
    #[derive(Default)]
    struct FlakyStore {
        cells: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        conflicts_left: Cell<u32>,
        interloper: RefCell<Option<RecordChange>>,
    }

    impl RecordStore for FlakyStore {
        fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Error> {
            Ok(match self.cells.borrow().get(key) {
                Some((bytes, version)) => (Some(bytes.clone()), Some(*version)),
                None => (None, None),
            })
        }

        fn write(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<(), WriteError> {
            if self.conflicts_left.get() > 0 {
                self.conflicts_left.set(self.conflicts_left.get() - 1);
                // Another worker's login lands first.
                let theirs = self.interloper.borrow().clone().unwrap_or_default();
                let (stored, current) = self
                    .read(key)
                    .map_err(|e| WriteError::Failed(e.to_string()))?;
                let mut record: UserRecord = stored
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                record.apply(&theirs);
                let bytes = serde_json::to_vec(&record).unwrap_or_default();
                self.cells
                    .borrow_mut()
                    .insert(key.into(), (bytes, current.unwrap_or(0) + 1));
                return Err(WriteError::Conflict);
            }
            let mut cells = self.cells.borrow_mut();
            let current = cells.get(key).map(|(_, v)| *v);
            if current != version {
                return Err(WriteError::Conflict);
            }
            cells.insert(key.into(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
    }

    fn login() -> RecordChange {
        RecordChange {
            count_login: true,
            ..RecordChange::default()
        }
    }

    #[test]
    fn first_login_creates_the_record_with_one_login() {
        let store = FlakyStore::default();
        let record = update(&store, "u1", &login()).unwrap();
        assert_eq!(record.logins_count, 1);
    }

    #[test]
    fn concurrent_logins_are_both_counted() {
        let store = FlakyStore::default();
        update(&store, "u1", &login()).unwrap();
        store.conflicts_left.set(3);
        *store.interloper.borrow_mut() = Some(login());
        let record = update(&store, "u1", &login()).unwrap();
        // Ours plus three logins that won the race.
        assert_eq!(record.logins_count, 5);
    }

    #[test]
    fn endless_conflicts_give_up_with_an_error() {
        let store = FlakyStore::default();
        store.conflicts_left.set(MAX_ATTEMPTS);
        assert!(matches!(
            update(&store, "u1", &login()),
            Err(Error::Store(_))
        ));
    }

    #[test]
    fn metadata_changes_merge_and_null_removes() {
        let store = FlakyStore::default();
        let mut change = RecordChange::default();
        change
            .app_metadata
            .insert("recordedAsLead".into(), Value::Bool(true));
        change
            .user_metadata
            .insert("fullcontact".into(), serde_json::json!({"fullName": "A"}));
        update(&store, "u1", &change).unwrap();

        let mut removal = RecordChange::default();
        removal
            .user_metadata
            .insert("fullcontact".into(), Value::Null);
        let record = update(&store, "u1", &removal).unwrap();
        assert_eq!(
            record.app_metadata.get("recordedAsLead"),
            Some(&Value::Bool(true))
        );
        assert!(record.user_metadata.is_empty());
        assert_eq!(record.logins_count, 0);
    }

    #[test]
    fn of_two_logins_racing_to_queue_a_lead_only_the_first_holds_it() {
        let store = FlakyStore::default();
        let queue = |by: u64| RecordChange {
            lead_queued_at: Some(Some(1_000)),
            lead_queued_by: Some(by),
            ..RecordChange::default()
        };
        let first = update(&store, "u1", &queue(1)).unwrap();
        assert_eq!(first.lead_queued_by, Some(1));
        let second = update(&store, "u1", &queue(2)).unwrap();
        assert_eq!(
            second.lead_queued_by,
            Some(1),
            "the second login does not take it over"
        );
    }

    #[test]
    fn an_empty_change_reads_without_writing() {
        let store = FlakyStore::default();
        store.conflicts_left.set(MAX_ATTEMPTS + 5);
        let record = update(&store, "u1", &RecordChange::default()).unwrap();
        assert_eq!(record, UserRecord::default());
    }

    #[test]
    fn an_unreadable_record_is_replaced() {
        let store = FlakyStore::default();
        store
            .cells
            .borrow_mut()
            .insert(key_of("u1"), (b"not json".to_vec(), 1));
        let record = update(&store, "u1", &login()).unwrap();
        assert_eq!(record.logins_count, 1);
    }
}
