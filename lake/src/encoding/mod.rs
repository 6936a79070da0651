//! Enriched records to Parquet: JSON extraction, Arrow table builders, files.

pub(crate) mod extraction;
pub(crate) mod file_set;
pub(crate) mod layout;
pub(crate) mod parquet_file;
pub(crate) mod table_builder;
pub(crate) mod unmapped_fields;
