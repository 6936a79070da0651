//! The tables as plain Hive-partitioned Parquet files.

pub(crate) mod intents;
