//! The embedded user store: records in Envoy's shared data, shared by every
//! worker of one Envoy and lost when it restarts.
//!
//! It implements [`rules::record::RecordStore`], so the read-modify-write
//! loop and its conflict handling live in the `rules` crate. Envoy's
//! shared data has compare-and-swap on existing keys but no atomic "create
//! if absent": two first logins of the same user on two workers within the
//! same instant may both create the record. Every later update is exact.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use rules::record::{RecordStore, WriteError};
use rules::Error;

pub struct EmbeddedStore;

impl RecordStore for EmbeddedStore {
    fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Error> {
        match hostcalls::get_shared_data(key) {
            Ok(found) => Ok(found),
            Err(status) => Err(Error::Store(format!("shared data read failed: {status:?}"))),
        }
    }

    fn write(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<(), WriteError> {
        match hostcalls::set_shared_data(key, Some(value), version) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(WriteError::Conflict),
            Err(status) => Err(WriteError::Failed(format!(
                "shared data write failed: {status:?}"
            ))),
        }
    }
}
