//! `prewarm token issue`: a new random token, shown once, and its tokens-file entry (hash, scope, user), optionally appended to the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use prewarm_server::auth::tokens::{self, Scope};
use serde_json::json;

use crate::cli_output;

#[derive(Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token: print it once, and the `[[token]]` entry (its sha256, never the token)
    /// for the origin's tokens file.
    Issue(IssueArgs),
}

#[derive(Args)]
struct IssueArgs {
    /// read, push, sandbox or admin.
    #[arg(long)]
    scope: Scope,
    /// The user a sandbox token acts as (required for sandbox, refused otherwise).
    #[arg(long)]
    user: Option<String>,
    /// A name for logs and for finding the entry again (e.g. alice-laptop).
    #[arg(long)]
    name: Option<String>,
    /// Append the entry to this tokens file (made with mode 0600 if absent), atomically,
    /// after checking the whole file still loads. Send the origin SIGHUP to use it.
    #[arg(long, value_name = "TOKENS_FILE")]
    append: Option<PathBuf>,
    /// Print {"token", "entry", "toml"} as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: TokenArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        TokenCommand::Issue(i) => issue(i),
    }
}

fn issue(a: IssueArgs) -> anyhow::Result<ExitCode> {
    let (token, entry) = tokens::issue(a.scope, a.user, a.name).map_err(anyhow::Error::msg)?;
    let toml = tokens::entry_toml(&entry);
    if let Some(file) = &a.append {
        append(file, &toml).with_context(|| format!("appending to {}", file.display()))?;
    }
    let out = json!({"token": token, "entry": entry, "toml": toml, "appended_to": a.append});
    cli_output::result(&out, a.json, |_| {
        let mut s = format!(
            "{token}\n\n# The token above is shown once: give it to its holder. The origin keeps only its hash.\n"
        );
        match &a.append {
            Some(f) => s.push_str(&format!(
                "# Appended to {}; send the origin SIGHUP (or restart it) to load it:\n{toml}",
                f.display()
            )),
            None => s.push_str(&format!(
                "# Add to the tokens file, then send the origin SIGHUP:\n{toml}"
            )),
        }
        s.trim_end().to_owned()
    });
    Ok(ExitCode::SUCCESS)
}

/// Writes `file + entry` to a temporary file beside it and renames it over `file`, once the
/// result parses as a tokens file: a crash leaves the old file or the new, never half of one.
fn append(file: &Path, entry: &str) -> anyhow::Result<()> {
    let old = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut text = old;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(entry);
    if let Err(m) = tokens::parse(&text) {
        bail!("the file would not load: {m}");
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o600);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(file)?;
    Ok(())
}
