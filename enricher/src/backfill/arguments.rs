//! What `enricher backfill` loads, and how the list endpoints are called.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::Resource;
use serde_json::Value;

/// What `enricher backfill` loads.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// Resources to load, comma separated (Results, Users, Locations,
    /// Assignments, Notes, Downtimes).
    #[arg(long = "resource", value_delimiter = ',', required = true)]
    pub resources: Vec<Resource>,

    /// The account to load, as the accounts file names it (its API key and
    /// URL); without an accounts file, the one account `default`.
    #[arg(long, env = "BACKFILL_ACCOUNT", default_value = schemas::DEFAULT_ACCOUNT)]
    pub account: String,

    /// Only records updated at or after this time (ISO-8601 UTC).
    #[arg(long, conflicts_with = "since")]
    pub updated_after: Option<DateTime<Utc>>,

    /// Only records updated before this time (ISO-8601 UTC). Without it the
    /// scan runs until it has caught up with now, so that records edited
    /// while it runs are included too.
    #[arg(long)]
    pub updated_before: Option<DateTime<Utc>>,

    /// Only records updated in this last stretch, e.g. `1d`: the
    /// reconciliation run, repeated on a schedule.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,

    /// Records per list request (Mobaro allows up to 20 on ordinary
    /// endpoints and 128 on bulk ones).
    #[arg(long, env = "BACKFILL_PAGE_SIZE", default_value_t = 128)]
    pub page_size: usize,

    /// Requests per second, list pages and `--fetch-each` record requests
    /// together: the backfill's own share of the account's rate limit,
    /// separate from the live enricher's.
    #[arg(long, env = "BACKFILL_RATE_LIMIT", default_value_t = 2.0)]
    pub rate_limit: f64,

    /// How far before the latest update time seen each page starts again, so
    /// that an exclusive or second-precision filter cannot skip a record
    /// (at least 1 ms).
    #[arg(long, env = "BACKFILL_OVERLAP", default_value = "1s", value_parser = humantime::parse_duration)]
    pub overlap: Duration,

    /// Fetch each listed record by id (the enricher's record path) instead
    /// of taking the list item as the record: for list endpoints that answer
    /// summaries. Costs one request per object more.
    #[arg(long, env = "BACKFILL_FETCH_EACH")]
    pub fetch_each: bool,

    /// Compare what is listed with the lake at this location (as `LAKE_URL`):
    /// the run then reports how many objects were new to the lake and how
    /// many changed since its latest row. Reads the `object_id` and
    /// `event_timestamp` columns of the resource's table: a Delta table's
    /// active files, or every file of a plain Parquet table.
    #[arg(long, env = "BACKFILL_COMPARE_LAKE")]
    pub compare_lake: Option<String>,

    /// Pages whose records may be in flight to the broker before the
    /// position is stored: more keeps a slow API and a slow broker busy at
    /// once; a kill -9 lists and produces at most this many pages again.
    #[arg(long, env = "BACKFILL_PAGES_IN_FLIGHT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pages_in_flight: u32,

    /// Count pages and objects without producing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Start over instead of resuming an unfinished run of the same command
    /// (same resource, window and list path; other commands never resume
    /// it).
    #[arg(long)]
    pub restart: bool,

    /// Compacted topic holding each resource's position.
    #[arg(long, env = "BACKFILL_CHECKPOINT_TOPIC", default_value = schemas::topics::BACKFILL_CHECKPOINTS)]
    pub checkpoint_topic: String,

    /// The shape of the list endpoints.
    #[command(flatten)]
    pub api: ListApi,
}

/// How the list endpoints are called and answer. Mobaro does not publish
/// the parameter names or the envelope: every part is configurable.
#[derive(Debug, Clone, clap::Args)]
pub struct ListApi {
    /// Path of a list endpoint under MOBARO_API_URL; `{collection}` is the
    /// resource's lower-case plural.
    #[arg(
        long = "list-path",
        env = "BACKFILL_LIST_PATH",
        default_value = "{collection}"
    )]
    pub path: String,
    /// Query parameter for the page size.
    #[arg(long, env = "BACKFILL_LIMIT_PARAM", default_value = "limit")]
    pub limit_param: String,
    /// Query parameter for the offset.
    #[arg(long, env = "BACKFILL_OFFSET_PARAM", default_value = "offset")]
    pub offset_param: String,
    /// Query parameter for "updated at or after".
    #[arg(
        long,
        env = "BACKFILL_UPDATED_AFTER_PARAM",
        default_value = "updatedAfter"
    )]
    pub updated_after_param: String,
    /// Query parameter for "updated before".
    #[arg(
        long,
        env = "BACKFILL_UPDATED_BEFORE_PARAM",
        default_value = "updatedBefore"
    )]
    pub updated_before_param: String,
    /// Query parameter for the order.
    #[arg(long, env = "BACKFILL_ORDER_PARAM", default_value = "orderBy")]
    pub order_param: String,
    /// Its value: ascending update time.
    #[arg(long, env = "BACKFILL_ORDER", default_value = "updated:asc")]
    pub order: String,
    /// JSON pointer to the items in a page.
    #[arg(long, env = "BACKFILL_ITEMS_PATH", default_value = "/items")]
    pub items_path: String,
    /// JSON pointer to the total count in a page (for progress only).
    #[arg(long, env = "BACKFILL_TOTAL_PATH", default_value = "/total")]
    pub total_path: String,
    /// JSON pointer to an item's id.
    #[arg(long, env = "BACKFILL_ID_FIELD", default_value = "/id")]
    pub id_field: String,
    /// JSON pointers to an item's update time, the first present wins.
    #[arg(
        long,
        env = "BACKFILL_UPDATED_FIELDS",
        value_delimiter = ',',
        default_value = "/updated,/updatedAt"
    )]
    pub updated_fields: Vec<String>,
}

impl BackfillArgs {
    /// The key of this command's run of `resource` on the API at `base`: a
    /// checkpoint is resumed only by a run with the same parameters against
    /// the same API (another account's URL starts its own run).
    pub(super) fn run_key(&self, resource: Resource, base: &url::Url) -> String {
        // The default account's keys are those of before accounts existed,
        // so that a run started then resumes.
        let source = match self.account.as_str() {
            schemas::DEFAULT_ACCOUNT => format!("{base}|{}", self.api.path),
            account => format!("{account}|{base}|{}", self.api.path),
        };
        super::checkpoint::run_key(
            resource,
            self.updated_after,
            self.since,
            self.updated_before,
            &source,
        )
    }

    /// The backfill's share of the account's rate limit, apart from the
    /// live enricher's.
    pub fn rate_share(&self) -> runtime::TokenBucket {
        runtime::TokenBucket::new(self.rate_limit.max(0.01), 1)
    }
}

impl ListApi {
    pub(super) fn total_path_value(&self, page: &Value) -> Option<u64> {
        page.pointer(&self.total_path)?.as_u64()
    }
}
