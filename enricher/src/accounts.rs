//! The accounts the enricher fetches for. Each has its own API client (its
//! key, base URL and token bucket), the resources it enriches, its own
//! fetches at once, and whether the API refuses its key: one account's
//! refused key or exhausted rate share holds up its own events only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use runtime::accounts::{AccountSettings, Accounts};
use runtime::{Readiness, TokenBucket};
use schemas::{EventKind, Resource, WebhookEvent, DEFAULT_ACCOUNT};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::client::{ClientError, MobaroClient};
use crate::config::{ApiKey, Config};

/// Why an account cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No API key.
    #[error("account {account}: no Mobaro API key (api_key_file or api_key_env in the accounts file, or MOBARO_API_KEY without one)")]
    NoApiKey {
        /// The account.
        account: String,
    },
    /// A resource name that is not one.
    #[error("account {account}: {name:?} is not a resource to enrich")]
    Resource {
        /// The account.
        account: String,
        /// The name.
        name: String,
    },
    /// A base URL that does not parse.
    #[error("account {account}: api_url {url:?} is not a URL")]
    Url {
        /// The account.
        account: String,
        /// The URL.
        url: String,
    },
    /// The API client could not be built.
    #[error("account {account}: {source}")]
    Client {
        /// The account.
        account: String,
        /// Why.
        source: ClientError,
    },
    /// An account the configuration does not have.
    #[error("no account {account} is configured (MOBARO_ACCOUNTS_FILE; without it, the one account is `default`)")]
    Unknown {
        /// The account.
        account: String,
    },
    /// The accounts file could not be read.
    #[error(transparent)]
    File(#[from] runtime::accounts::AccountsError),
}

/// One account, as the enricher serves it.
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) client: MobaroClient,
    enrich: Vec<Resource>,
    /// Its fetches at once.
    pub(crate) permits: Arc<Semaphore>,
    refused: AtomicBool,
    settings: AccountSettings,
}

impl Account {
    /// The resource whose record `event` needs fetched, if any.
    pub(crate) fn needs_fetch(&self, event: &WebhookEvent) -> Option<Resource> {
        (event.event != EventKind::Deleted && self.enrich.contains(&event.resource))
            .then_some(event.resource)
    }
}

/// The accounts as they stand, and which of them the API refuses.
pub(crate) struct Registry {
    by_id: RwLock<HashMap<String, Arc<Account>>>,
    /// True while the API refuses the key of every account: then nothing
    /// can be enriched, and consumption pauses.
    all_refused: watch::Sender<bool>,
    readiness: Readiness,
}

impl Registry {
    /// The account `id`, if it is configured.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Account>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Whether every account's key is refused, as it changes.
    pub(crate) fn all_refused(&self) -> watch::Receiver<bool> {
        self.all_refused.subscribe()
    }

    /// Records whether the API refuses `account`'s key; true when that
    /// changed.
    pub(crate) fn set_refused(&self, account: &Account, refused: bool) -> bool {
        let changed = account.refused.swap(refused, Ordering::Relaxed) != refused;
        if changed {
            crate::telemetry::key_refused(&account.id, refused);
            self.refresh();
        }
        changed
    }

    /// Brings the readiness and the pause up to the accounts' state.
    fn refresh(&self) {
        let by_id = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let mut refused: Vec<&str> = by_id
            .values()
            .filter(|a| a.refused.load(Ordering::Relaxed))
            .map(|a| a.id.as_str())
            .collect();
        refused.sort_unstable();
        self.all_refused
            .send_replace(!by_id.is_empty() && refused.len() == by_id.len());
        self.readiness.set(
            runtime::checks::MOBARO_API,
            match refused.as_slice() {
                [] => Ok(()),
                ids => Err(format!(
                    "the API refuses the key of account(s) {}",
                    ids.join(", ")
                )),
            },
        );
    }

    /// Puts `accounts` in force, keeping the state (token bucket, refused
    /// key) of those whose settings did not change.
    fn replace(&self, config: &Config, accounts: &Accounts) -> Result<(), AccountError> {
        let current = self.by_id.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut next = HashMap::new();
        for settings in accounts.by_id.values() {
            let account = match current.get(&settings.id) {
                Some(kept) if kept.settings == *settings => kept.clone(),
                _ => {
                    crate::telemetry::key_refused(&settings.id, false);
                    Arc::new(account(config, settings)?)
                }
            };
            next.insert(settings.id.clone(), account);
        }
        *self.by_id.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.refresh();
        Ok(())
    }
}

/// The accounts of the accounts file (following it until `shutdown`), or
/// the one default account of the API variables.
pub(crate) fn registry(
    config: &Config,
    readiness: Readiness,
    shutdown: &CancellationToken,
) -> Result<Arc<Registry>, AccountError> {
    let registry = Arc::new(Registry {
        by_id: RwLock::default(),
        all_refused: watch::Sender::new(false),
        readiness,
    });
    let Some(path) = &config.accounts_file else {
        registry.replace(config, &single(config))?;
        return Ok(registry);
    };
    let initial = runtime::accounts::load(path)?;
    registry.replace(config, &initial)?;
    tracing::info!(accounts = ?initial.ids(), "enriching for the accounts of the accounts file");
    let (kept, config) = (registry.clone(), config.clone());
    runtime::accounts::on_change(path.clone(), initial, shutdown.clone(), move |accounts| {
        if let Err(error) = kept.replace(&config, accounts) {
            tracing::error!(%error, "the accounts file is refused; the last good accounts stay in force");
        }
    });
    Ok(registry)
}

/// The settings of one account, `id`, from the file or the API variables.
pub(crate) fn settings_of(config: &Config, id: &str) -> Result<AccountSettings, AccountError> {
    let accounts = match &config.accounts_file {
        Some(path) => runtime::accounts::load(path)?,
        None => single(config),
    };
    accounts
        .by_id
        .get(id)
        .cloned()
        .ok_or_else(|| AccountError::Unknown {
            account: id.to_string(),
        })
}

/// The one default account of the API variables.
fn single(config: &Config) -> Accounts {
    let key = config.api_key.0.trim();
    let settings = AccountSettings {
        id: DEFAULT_ACCOUNT.to_string(),
        webhook_secrets: Vec::new(),
        api_url: Some(config.api_url.to_string()),
        api_key: (!key.is_empty()).then(|| key.to_string()),
        rate_per_second: Some(config.api_rate_limit),
        enrich: Some(
            config
                .enrich
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
        ),
    };
    Accounts {
        by_id: [(settings.id.clone(), settings)].into(),
    }
}

/// The account of `settings`, what it leaves out taken from `config`.
pub(crate) fn account(
    config: &Config,
    settings: &AccountSettings,
) -> Result<Account, AccountError> {
    let id = settings.id.clone();
    let key = settings
        .api_key
        .clone()
        .filter(|key| !key.trim().is_empty())
        .ok_or_else(|| AccountError::NoApiKey {
            account: id.clone(),
        })?;
    let base = match &settings.api_url {
        Some(url) => Url::parse(url).map_err(|_| AccountError::Url {
            account: id.clone(),
            url: url.clone(),
        })?,
        None => config.api_url.clone(),
    };
    let enrich = match &settings.enrich {
        Some(names) => names
            .iter()
            .map(|name| {
                name.parse().map_err(|_| AccountError::Resource {
                    account: id.clone(),
                    name: name.clone(),
                })
            })
            .collect::<Result<_, _>>()?,
        None => config.enrich.clone(),
    };
    let rate = settings.rate_per_second.unwrap_or(config.api_rate_limit);
    let limit = (rate > 0.0).then(|| TokenBucket::new(rate, config.api_rate_burst));
    let client = crate::api_client(config, base, ApiKey(key), limit).map_err(|source| {
        AccountError::Client {
            account: id.clone(),
            source,
        }
    })?;
    Ok(Account {
        id,
        client,
        enrich,
        permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
        refused: AtomicBool::new(false),
        settings: settings.clone(),
    })
}
