//! What to do about an error that stopped the sink: the remedy printed
//! after the error at start-up failure, in the sink's own terms (its
//! commands and settings), for errors of the libraries too.

use lake::{ConversionError, DeltaError, LakeError, TablesError};

use crate::consumption::ConsumptionError;
use crate::SinkError;

impl runtime::Hint for SinkError {
    fn hint(&self) -> Option<String> {
        match self {
            SinkError::Lake(error) => lake(error),
            SinkError::Tables(error) => tables(error),
            SinkError::Delta(error) => delta(error),
            SinkError::Consumption(error) => consumption(error),
            SinkError::Conversion(ConversionError::UnfinishedFlush { .. }) => Some(
                "start the Parquet sink (LAKE_FORMAT=parquet) on this prefix once: it replays the range, writes the missing files and removes the intent; stop it, then run the conversion again".into(),
            ),
            SinkError::Conversion(ConversionError::Foreign { .. }) => Some(
                "move the file out of the table's folder (or delete it), then run the conversion again".into(),
            ),
            SinkError::Conversion(ConversionError::Lake(error)) => lake(error),
            SinkError::Conversion(ConversionError::Delta(error)) => delta(error),
            _ => None,
        }
    }
}

fn consumption(error: &ConsumptionError) -> Option<String> {
    match error {
        ConsumptionError::Store { source, .. } => tables(source),
        ConsumptionError::TopicRestarted { .. } => Some(
            "if it is a new topic under the old name, set SINK_SOURCE_ID to a new value (the new cluster's name, say) and restart: the tables keep what they hold and the new topic's records are added from its first offset; if it is the same topic and the broker lost records, restore the broker instead".into(),
        ),
        ConsumptionError::OtherCluster { topic, .. } => Some(format!(
            "if the topic on this cluster is a new one, set SINK_SOURCE_ID to a new value (the new cluster's name, say) and restart: the tables keep what they hold and its records are added from its first offset; if it holds the very records of the old one at the same offsets (a mirror that keeps offsets), delete _sink_sources/{topic} under LAKE_URL and restart"
        )),
        _ => None,
    }
}

fn tables(error: &TablesError) -> Option<String> {
    match error {
        TablesError::Store(error) => lake(error),
        TablesError::Delta(error) => delta(error),
        TablesError::ParquetPrefix { .. } => Some(
            "stop every sink writing this prefix and convert it in place with `sink convert-to-delta` (the files stay as they are and become the tables' history), or point LAKE_URL at a new prefix for the Delta tables, or keep LAKE_FORMAT=parquet for this prefix".into(),
        ),
        TablesError::DeltaPrefix { .. } => Some(
            "set LAKE_FORMAT=delta for this prefix, or point LAKE_URL at a new prefix".into(),
        ),
        TablesError::ConversionUnfinished { .. } => Some(
            "run `sink convert-to-delta` again with the same settings: it adds what the first run did not, then Delta sinks may start".into(),
        ),
        _ => None,
    }
}

fn delta(error: &DeltaError) -> Option<String> {
    match error {
        DeltaError::SchemaConflict { .. } => Some(
            "write this version of the pipeline to a new LAKE_URL prefix, or rewrite the table with the new type (in Spark or DuckDB, say) and restart".into(),
        ),
        _ => None,
    }
}

fn lake(error: &LakeError) -> Option<String> {
    match error {
        LakeError::ForeignFile { .. } => Some(
            "the topic was deleted and created again, or another deployment writes a topic of the same name into this prefix: give this deployment its own LAKE_URL prefix or topic name".into(),
        ),
        LakeError::NotCreateOnly { .. } => Some(
            "use a store that honours conditional writes (AWS S3, MinIO, Cloudflare R2, GCS, Azure), or set SINK_TRUST_STORE=true only where one sink alone writes the prefix with its upkeep off (SINK_COMPACT_EVERY=0s) and no `sink compact` or `sink vacuum` runs: its upkeep is a second writer, and the sink joins no locking provider".into(),
        ),
        _ => None,
    }
}
