//! `mcp-policy check FILE`: validate a policy exactly as the filter would, before deploying it.
//! `mcp-policy hash VALUE`: how a secret identity (an API key) is listed in a grant.
//! `mcp-policy explain FILE (--tool NAME | --resource URI | --prompt NAME | --method NAME)
//! [--identity VALUE] [--args JSON]`: what the filter would decide for one call (or resource
//! read, prompt, other request), and which element of the policy decided it.
//! `mcp-policy import INTERCEPT.yaml`: an Intercept policy as ours.
//! `mcp-policy pin URL [--header NAME:VALUE]...`: the `pins` block for a live server's tools.

mod go_regexp;
mod intercept_import;
mod pin;

use std::process::ExitCode;

use mcp_policy_engine::sha256_tag;
use mcp_policy_engine::{explain_request, load_policy};

const USAGE: &str = "usage: mcp-policy check FILE | mcp-policy hash VALUE \
     | mcp-policy explain FILE (--tool NAME | --resource URI | --prompt NAME | --method NAME) \
     [--identity VALUE] [--args JSON] \
     | mcp-policy import INTERCEPT.yaml \
     | mcp-policy pin URL [--header NAME:VALUE]... [--mode enforce|report|first_seen] \
     [--transport http|sse] [--timeout SECONDS]";

/// What `explain` is asked about: the flag that named it, and the name.
type Subject<'a> = (&'a str, &'a str);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check", file] => check(file),
        ["import", file] => import(file),
        ["explain", file, rest @ ..] => explain(file, rest),
        ["pin", rest @ ..] => pin::run(rest),
        ["hash", value] => {
            println!("{}", sha256_tag(value));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Print the JSON policy equivalent to an Intercept YAML policy; warnings go to stderr.
fn import(file: &str) -> ExitCode {
    let yaml = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::intercept_import::import(&yaml) {
        Ok(imported) => {
            for warning in &imported.warnings {
                eprintln!("{file}: warning: {warning}");
            }
            match serde_json::to_string_pretty(&imported.policy) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{file}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("{file}: cannot import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The decision for one request and the rule path that produced it, as JSON on stdout.
fn explain(file: &str, options: &[&str]) -> ExitCode {
    let (mut subject, mut identity, mut arguments): (Option<Subject>, _, _) = (None, None, None);
    let mut it = options.iter();
    while let Some(flag) = it.next() {
        let value = it.next().copied();
        match (*flag, value) {
            ("--tool" | "--resource" | "--prompt" | "--method", Some(v)) if subject.is_none() => {
                subject = Some((flag, v));
            }
            ("--identity", Some(v)) => identity = Some(v),
            ("--args", Some(v)) => match serde_json::from_str::<serde_json::Value>(v) {
                Ok(args) => arguments = Some(args),
                Err(e) => {
                    eprintln!("--args: not JSON: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(subject) = subject else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = match load_policy(&text) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("{file}: invalid policy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let arguments = arguments.as_ref();
    let explanation = match subject {
        ("--tool", tool) => mcp_policy_engine::explain(&policy, tool, identity, arguments),
        ("--resource", uri) => {
            explain_request(&policy, "resources/read", Some(uri), identity, arguments)
        }
        ("--prompt", name) => {
            explain_request(&policy, "prompts/get", Some(name), identity, arguments)
        }
        (_, method) => explain_request(&policy, method, None, identity, arguments),
    };
    match serde_json::to_string_pretty(&explanation) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &str) -> ExitCode {
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    match load_policy(&text) {
        Ok(policy) => {
            println!("{file}: {}", policy.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Same text the filter logs when Envoy hands it this policy.
            eprintln!("{file}: invalid policy: {e}");
            ExitCode::FAILURE
        }
    }
}
