//! The lake's tables opened as configured, once the store answers.

use lake::{Lake, Tables, TablesError};
use runtime::Retried;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::{flush, SinkError};

/// The lake's tables, in the configured format, once the store is known to
/// refuse a second create of one key and the prefix to hold no table of the
/// other format (retried while the store is down).
pub(crate) async fn tables(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Tables, SinkError> {
    let lake = Lake::open(&config.lake_url)?;
    let tables = Tables::open(lake, config.lake_format, &config.source());
    until_the_store_answers(shutdown, "reading the lake", || async {
        if !config.trust_store {
            tables.lake().check_create_only().await?;
        }
        tables.check_format().await
    })
    .await?;
    Ok(tables)
}

/// Runs `step` until it succeeds, retrying while the store fails in a way
/// that may pass; a permanent refusal (or shutdown) ends it.
pub(crate) async fn until_the_store_answers<F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    mut step: F,
) -> Result<(), SinkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TablesError>>,
{
    flush::STORE_RETRY
        .run(
            shutdown,
            |_| step(),
            |error, attempt| {
                if error.is_permanent() {
                    return runtime::Verdict::GiveUp;
                }
                tracing::warn!(%error, attempt, "{what} failed; retrying");
                runtime::Verdict::Retry
            },
        )
        .await
        .or_stopped()??;
    Ok(())
}
