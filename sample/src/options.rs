//! Command line of `sample-mcp-server`.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

/// Which set of stand-in tools to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// WeChat Official Account mass messaging: `wechat_*` tools.
    Wechat,
    /// Group-robot notifications: `ding_*`, `wework_*`, `lark_*` tools.
    Notify,
}

impl ServerKind {
    /// The name used on the command line and in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Wechat => "wechat",
            ServerKind::Notify => "notify",
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServerKind {
    type Err = OptionsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wechat" => Ok(ServerKind::Wechat),
            "notify" => Ok(ServerKind::Notify),
            other => Err(OptionsError(format!(
                "unknown server `{other}` (expected wechat or notify)"
            ))),
        }
    }
}

/// What to serve and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The tool set.
    pub kind: ServerKind,
    /// TCP port on 127.0.0.1; 0 lets the OS pick a free one.
    pub port: u16,
    /// rmcp stateless mode with plain JSON responses instead of sessions and SSE.
    pub stateless: bool,
    /// At most this many items per page of `tools/list`, `resources/list`,
    /// `resources/templates/list` and `prompts/list` (wechat only); `None`: one page.
    pub page_size: Option<NonZeroUsize>,
}

/// A command line that cannot be used; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionsError {}

/// Usage text for `--help` and errors.
pub const USAGE: &str =
    "usage: sample-mcp-server --server wechat|notify [--port N] [--stateless] [--page-size N]

Serves stand-in MCP tools over Streamable HTTP at http://127.0.0.1:PORT/mcp,
with call accounting at GET /stats and POST /stats/reset.
  --server wechat|notify  which tool set to serve (required)
  --port N                TCP port on 127.0.0.1 (default 0: the OS picks one)
  --stateless             rmcp stateless mode with JSON responses (no sessions)
  --page-size N           wechat only: at most N items per page of tools/list,
                          resources/list, resources/templates/list and prompts/list,
                          continued through nextCursor (default: all on one page)
The wechat server also serves resources and prompts, and changes its tools on request:
  POST /admin/tools {\"tool\":NAME,\"description\":TEXT}  new description
  POST /admin/tools {\"tool\":NAME,\"rename\":NEW_NAME}   listed and callable as NEW_NAME only
  POST /admin/tools/reset                             undo every change
Prints `listening on http://127.0.0.1:PORT/mcp` once bound.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve with these options.
    Run(Options),
    /// Print the usage and exit successfully.
    Help,
}

impl Options {
    /// Parse the arguments after the program name. Accepts `--flag value` and `--flag=value`.
    pub fn parse<I, S>(args: I) -> Result<Command, OptionsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut kind = None;
        let mut port = 0u16;
        let mut stateless = false;
        let mut page_size = None;
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg, None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| OptionsError(format!("{name} needs a value")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--server" => kind = Some(value("--server")?.parse::<ServerKind>()?),
                "--port" => {
                    let raw = value("--port")?;
                    port = raw
                        .parse()
                        .map_err(|_| OptionsError(format!("invalid --port `{raw}`")))?;
                }
                "--stateless" if inline.is_none() => stateless = true,
                "--page-size" => page_size = Some(parse_page_size(&value("--page-size")?)?),
                other => return Err(OptionsError(format!("unexpected argument `{other}`"))),
            }
        }
        let kind = kind.ok_or_else(|| OptionsError("--server is required".to_owned()))?;
        if page_size.is_some() && kind != ServerKind::Wechat {
            return Err(OptionsError(
                "--page-size is only served by --server wechat".to_owned(),
            ));
        }
        Ok(Command::Run(Options {
            kind,
            port,
            stateless,
            page_size,
        }))
    }
}

fn parse_page_size(raw: &str) -> Result<NonZeroUsize, OptionsError> {
    raw.parse()
        .map_err(|_| OptionsError(format!("invalid --page-size `{raw}` (expected 1 or more)")))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(
            Options::parse(["--server", "wechat"]),
            Ok(Command::Run(Options {
                kind: ServerKind::Wechat,
                port: 0,
                stateless: false,
                page_size: None
            }))
        );
        assert_eq!(
            Options::parse(["--stateless", "--server=notify", "--port", "8081"]),
            Ok(Command::Run(Options {
                kind: ServerKind::Notify,
                port: 8081,
                stateless: true,
                page_size: None
            }))
        );
        assert_eq!(
            Options::parse(["--server", "wechat", "--page-size=2"]),
            Ok(Command::Run(Options {
                kind: ServerKind::Wechat,
                port: 0,
                stateless: false,
                page_size: NonZeroUsize::new(2)
            }))
        );
        assert_eq!(Options::parse(["--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Options::parse(Vec::<String>::new()).is_err());
        assert!(Options::parse(["--server", "mail"]).is_err());
        assert!(Options::parse(["--server", "wechat", "--port", "70000"]).is_err());
        assert!(Options::parse(["--server", "wechat", "--port"]).is_err());
        assert!(Options::parse(["--server", "wechat", "extra"]).is_err());
        assert!(Options::parse(["--server", "wechat", "--page-size", "0"]).is_err());
        assert!(Options::parse(["--server", "wechat", "--page-size", "x"]).is_err());
        assert!(Options::parse(["--server", "notify", "--page-size", "2"]).is_err());
    }
}
