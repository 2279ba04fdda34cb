//! The proxy-wasm adapter: Envoy in, engine decision out. Everything that can be decided without
//! the host lives in `crate::engine`.

mod http;
mod root;
mod shared_data;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs the SDK's panic hook, which logs the panic at critical level before the VM
    // traps; Envoy's Wasm `failure_policy` then decides what happens to traffic (fail closed by
    // default).
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::PolicyRoot::default())
    });
}}
