//! Per Mobaro account, how its webhooks are verified: its own secrets
//! only, so that a request is checked against one account's secrets and a
//! secret of one account never admits a webhook into another.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use runtime::accounts::Accounts;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::signature::{Secret, SignatureForm, Verifier};

/// The verifier of each account.
pub(crate) type ByAccount = HashMap<String, Arc<Verifier>>;

/// The accounts' verifiers as they stand: fixed (today's variables, one
/// default account) or following the accounts file.
#[derive(Clone)]
pub struct Verifiers(watch::Receiver<Arc<ByAccount>>);

impl Verifiers {
    /// Verifiers that never change.
    pub fn fixed(by_account: ByAccount) -> Verifiers {
        Verifiers(watch::channel(Arc::new(by_account)).1)
    }

    /// The verifiers of the accounts in `path` (starting from `initial`),
    /// rebuilt whenever the file changes, until `shutdown`.
    pub fn following(
        path: PathBuf,
        initial: Accounts,
        forms: Vec<SignatureForm>,
        shutdown: CancellationToken,
    ) -> Verifiers {
        let (sender, receiver) = watch::channel(Arc::new(verifiers_of(&initial, &forms)));
        runtime::accounts::on_change(path, initial, shutdown, move |accounts| {
            sender.send_replace(Arc::new(verifiers_of(accounts, &forms)));
        });
        Verifiers(receiver)
    }

    /// The verifier of `account`, if it is one of them.
    pub fn get(&self, account: &str) -> Option<Arc<Verifier>> {
        self.0.borrow().get(account).cloned()
    }
}

/// One verifier per account, with its secrets; an account without any
/// refuses every webhook.
pub(crate) fn verifiers_of(accounts: &Accounts, forms: &[SignatureForm]) -> ByAccount {
    accounts
        .by_id
        .values()
        .map(|account| {
            if account.webhook_secrets.is_empty() {
                tracing::warn!(account = %account.id, "account without webhook secrets: its webhooks are refused");
            }
            let secrets = account
                .webhook_secrets
                .iter()
                .map(|s| Secret::new(s.as_str()))
                .collect();
            (
                account.id.clone(),
                Arc::new(Verifier::new(secrets, forms.to_vec())),
            )
        })
        .collect()
}
