//! The Mobaro accounts one deployment serves, from an accounts file
//! (`MOBARO_ACCOUNTS_FILE`, TOML), read again on SIGHUP and whenever the
//! file or a file it names changes. A file that does not read is refused
//! with its line, and the last good accounts stay in force.
//!
//! ```toml
//! [[account]]
//! id = "park-a"
//! webhook_secrets_file = "/run/secrets/park-a-webhook"  # one per line
//! api_key_file = "/run/secrets/park-a-api-key"
//! api_url = "https://app.mobaro.com/api/customers/"      # optional
//! rate_per_second = 5                                    # optional
//! enrich = ["Results", "Users"]                          # optional
//! ```
//!
//! Secrets and keys come from files (`*_file`) or environment variables
//! (`*_env`), never from the accounts file itself, and are never printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What one account's settings are; what a field leaves out, the binary's
/// own settings give.
#[derive(Clone, PartialEq)]
pub struct AccountSettings {
    /// The account's id: a URL path segment, a key prefix, a column value.
    pub id: String,
    /// Its webhook secrets.
    pub webhook_secrets: Vec<String>,
    /// Its API's base URL.
    pub api_url: Option<String>,
    /// Its API key.
    pub api_key: Option<String>,
    /// Its share of the account's API rate limit, requests per second.
    pub rate_per_second: Option<f64>,
    /// The resources whose records are fetched for it.
    pub enrich: Option<Vec<String>>,
}

impl fmt::Debug for AccountSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountSettings")
            .field("id", &self.id)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("api_url", &self.api_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("rate_per_second", &self.rate_per_second)
            .field("enrich", &self.enrich)
            .finish()
    }
}

/// The accounts, by id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Accounts {
    /// Every account, by id.
    pub by_id: BTreeMap<String, AccountSettings>,
}

impl Accounts {
    /// The ids, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.by_id.keys().map(String::as_str).collect()
    }
}

/// Why an accounts file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The file could not be read.
    #[error("reading the accounts file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the accounts TOML. Only the position and the
    /// parser's message are given: the line itself might hold a secret.
    #[error("the accounts file {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An id that cannot be an account's.
    #[error("the accounts file {path}: account id {id:?} is not 1 to 63 lowercase letters, digits, '-' or '_'")]
    InvalidId {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
    },
    /// Two accounts of one id.
    #[error("the accounts file {path}: account {id} appears twice")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
    },
    /// A secret or key file could not be read.
    #[error("account {account}: reading {path}: {source}")]
    SecretFile {
        /// The account.
        account: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret or key variable is not set.
    #[error("account {account}: the environment variable {variable} is not set")]
    MissingVariable {
        /// The account.
        account: String,
        /// The variable.
        variable: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    account: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    webhook_secrets_file: Option<PathBuf>,
    webhook_secrets_env: Option<String>,
    api_url: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    rate_per_second: Option<f64>,
    enrich: Option<Vec<String>>,
}

/// Reads the accounts file at `path` and the secrets it names.
pub fn load(path: &Path) -> Result<Accounts, AccountsError> {
    let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: File = toml::from_str(&text).map_err(|error| AccountsError::Parse {
        path: path.to_path_buf(),
        line: error
            .span()
            .map_or(1, |span| text[..span.start].matches('\n').count() + 1),
        message: error.message().to_string(),
    })?;
    let mut accounts = Accounts::default();
    for entry in file.account {
        if !schemas::is_account_id(&entry.id) {
            return Err(AccountsError::InvalidId {
                path: path.to_path_buf(),
                id: entry.id,
            });
        }
        let settings = settings(entry)?;
        if accounts.by_id.contains_key(&settings.id) {
            return Err(AccountsError::Duplicate {
                path: path.to_path_buf(),
                id: settings.id,
            });
        }
        accounts.by_id.insert(settings.id.clone(), settings);
    }
    Ok(accounts)
}

fn settings(entry: Entry) -> Result<AccountSettings, AccountsError> {
    let account = entry.id.clone();
    let file = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| AccountsError::SecretFile {
            account: account.clone(),
            path: path.to_path_buf(),
            source,
        })
    };
    let variable = |name: &str| {
        std::env::var(name).map_err(|_| AccountsError::MissingVariable {
            account: account.clone(),
            variable: name.to_string(),
        })
    };
    let mut webhook_secrets = Vec::new();
    if let Some(path) = &entry.webhook_secrets_file {
        webhook_secrets.extend(
            file(path)?
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string),
        );
    }
    if let Some(name) = &entry.webhook_secrets_env {
        webhook_secrets.extend(
            variable(name)?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    let api_key = match (&entry.api_key_file, &entry.api_key_env) {
        (Some(path), _) => Some(file(path)?.trim().to_string()),
        (None, Some(name)) => Some(variable(name)?.trim().to_string()),
        (None, None) => None,
    };
    Ok(AccountSettings {
        id: entry.id,
        webhook_secrets,
        api_url: entry.api_url,
        api_key,
        rate_per_second: entry.rate_per_second,
        enrich: entry.enrich,
    })
}

/// How often the file and the files it names are read again to see
/// whether they changed.
const POLL: Duration = Duration::from_secs(2);

/// The accounts of `path`, starting at `initial`, kept current until
/// `shutdown`: read again on SIGHUP and every two seconds; a change is
/// logged with the ids, a refused file with its error (once per error),
/// and the last good accounts stay.
pub fn watch(
    path: PathBuf,
    initial: Accounts,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<Accounts>> {
    let (sender, receiver) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        let mut hangup = hangups();
        let mut poll = tokio::time::interval(POLL);
        let mut last_error = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = poll.tick() => {}
                Some(()) = hangup.recv() => tracing::info!(path = %path.display(), "SIGHUP: reading the accounts file again"),
            }
            match load(&path) {
                Ok(accounts) => {
                    last_error = None;
                    if **sender.borrow() != accounts {
                        tracing::info!(accounts = ?accounts.ids(), "accounts reloaded");
                        sender.send_replace(Arc::new(accounts));
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    if last_error.as_ref() != Some(&text) {
                        tracing::error!(error = %text, "the accounts file is refused; the last good accounts stay in force");
                        last_error = Some(text);
                    }
                }
            }
        }
    });
    receiver
}

/// Calls `apply` with the accounts of `path` (starting from `initial`)
/// each time they change, until `shutdown` (see [`watch`]).
pub fn on_change(
    path: PathBuf,
    initial: Accounts,
    shutdown: CancellationToken,
    mut apply: impl FnMut(&Accounts) + Send + 'static,
) {
    let mut accounts = watch(path, initial, shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = accounts.changed() => if changed.is_err() { return },
            }
            let current = accounts.borrow_and_update().clone();
            apply(&current);
        }
    });
}

/// A channel that yields once per SIGHUP (never, where there is none).
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hangup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    let _ = sender.try_send(());
                }
            });
        }
    }
    #[cfg(not(unix))]
    drop(sender);
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_file_reads_with_its_secrets_from_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("a.secrets"), "# old\ns1\n\ns2\n").expect("writes");
        std::fs::write(dir.path().join("a.key"), "key-a\n").expect("writes");
        let path = dir.path().join("accounts.toml");
        std::fs::write(
            &path,
            format!(
                "[[account]]\nid = \"park-a\"\nwebhook_secrets_file = \"{0}/a.secrets\"\napi_key_file = \"{0}/a.key\"\nrate_per_second = 2.5\nenrich = [\"Results\"]\n\n[[account]]\nid = \"park-b\"\n",
                dir.path().display()
            ),
        )
        .expect("writes");
        let accounts = load(&path).expect("reads");
        assert_eq!(accounts.ids(), ["park-a", "park-b"]);
        let a = &accounts.by_id["park-a"];
        assert_eq!(a.webhook_secrets, ["s1", "s2"]);
        assert_eq!(a.api_key.as_deref(), Some("key-a"));
        assert_eq!(a.rate_per_second, Some(2.5));
        assert!(!format!("{a:?}").contains("key-a"));
        assert!(accounts.by_id["park-b"].webhook_secrets.is_empty());
    }

    #[test]
    fn a_file_that_does_not_read_is_refused_with_its_line_and_no_secret() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("accounts.toml");
        std::fs::write(
            &path,
            "[[account]]\nid = \"park-a\"\nwebhook_secret = \"hunter2\"\n",
        )
        .expect("writes");
        let error = load(&path).expect_err("an unknown field").to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        std::fs::write(&path, "[[account]]\nid = \"Park A\"\n").expect("writes");
        assert!(matches!(load(&path), Err(AccountsError::InvalidId { .. })));
        std::fs::write(&path, "[[account]]\nid = \"a\"\n[[account]]\nid = \"a\"\n")
            .expect("writes");
        assert!(matches!(load(&path), Err(AccountsError::Duplicate { .. })));
    }
}
