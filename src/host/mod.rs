//! The proxy-wasm adapter: Envoy in, engine decision out. Everything that can be decided without
//! the host lives in `crate::engine`.

mod entropy;
mod envoy;
mod http;
mod metrics;
mod phase_timing;
mod raw_headers;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Replaces the SDK's hook (installed just above) with one that says whose panic it is. After
    // the hook the VM traps; the plugin's `failure_policy` then decides what happens to traffic
    // (the sample uses FAIL_RELOAD: requests fail closed until a fresh VM is up).
    std::panic::set_hook(Box::new(|info| {
        root::log(LogLevel::Critical, &format!("mcp-policy-filter panicked, VM will trap: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::PolicyRoot::default())
    });
}}
