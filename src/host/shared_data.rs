//! Envoy shared data as the engine's `CasStore`. Shared data is per VM id and shared by every
//! worker thread, which is what makes a limit exact across workers.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use mcp_policy_engine::counters::{CasStore, SetOutcome, StoreError};

pub struct EnvoySharedData;

impl CasStore for EnvoySharedData {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            Ok((None, _)) => Ok(None),
            Ok((Some(_), None)) => Err(StoreError(format!("shared data {key}: value without CAS"))),
            Err(status) => Err(StoreError(format!("get_shared_data({key}): {status:?}"))),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(SetOutcome::Stored),
            Err(Status::CasMismatch) => Ok(SetOutcome::CasMismatch),
            Err(status) => Err(StoreError(format!("set_shared_data({key}): {status:?}"))),
        }
    }
}
