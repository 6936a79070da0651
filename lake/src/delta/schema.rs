//! The tables' schemas in Delta terms: the columns of the data contract
//! with the `dt` partition column, a table created with them, and an older
//! table's schema brought up to them.

use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{
    Action, DataType as DeltaType, MetadataExt, PrimitiveType, StructField, StructType,
};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use schemas::Table;

use crate::delta::actions::commit_properties;
use crate::delta::error::DeltaError;
use crate::path::PARTITION_COLUMN;

/// Whether a table's schema had to change to take the sink's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Conformed {
    Already,
    /// Columns were added in a metadata commit.
    Evolved,
    /// Another writer committed first: checked again on the next load.
    Raced,
}

/// Makes `current`'s schema hold every column of the sink's: the columns it
/// lacks (added to the data contract since the table was created) are added
/// as nullable in one metadata commit, so readers see them; a column whose
/// type differs stops the sink.
pub(crate) async fn conform_schema(
    table: Table,
    current: &DeltaTable,
) -> Result<Conformed, DeltaError> {
    let state = current.snapshot().map_err(DeltaError::of(table))?;
    let existing = state.schema();
    let mut missing = Vec::new();
    for wanted in delta_columns(table)? {
        match existing.field(wanted.name()) {
            Some(found) if found.data_type() == wanted.data_type() => {}
            Some(found) => {
                return Err(DeltaError::SchemaConflict {
                    table: table.name(),
                    column: wanted.name().clone(),
                    found: found.data_type().to_string(),
                    wanted: wanted.data_type().to_string(),
                })
            }
            None => missing.push(StructField::new(
                wanted.name().clone(),
                wanted.data_type().clone(),
                true,
            )),
        }
    }
    if missing.is_empty() {
        return Ok(Conformed::Already);
    }
    let evolved = StructType::try_new(existing.fields().cloned().chain(missing.iter().cloned()))
        .map_err(|error| DeltaError::Schema {
            table: table.name(),
            reason: error.to_string(),
        })?;
    let metadata = state
        .metadata()
        .clone()
        .with_schema(&evolved)
        .map_err(|error| DeltaError::Schema {
            table: table.name(),
            reason: error.to_string(),
        })?;
    let added: Vec<String> = missing.iter().map(|f| f.name().clone()).collect();
    let committed = CommitBuilder::from(commit_properties(0))
        .with_actions(vec![Action::Metadata(metadata)])
        .build(
            Some(state),
            current.log_store(),
            DeltaOperation::AddColumn { fields: missing },
        )
        .await;
    match committed {
        Ok(_) => {
            tracing::info!(table = table.name(), columns = ?added, "columns added to the table's schema");
            Ok(Conformed::Evolved)
        }
        // Another writer changed the table first: the next load checks again.
        Err(DeltaTableError::Transaction { .. })
        | Err(DeltaTableError::VersionAlreadyExists(_)) => {
            tracing::info!(
                table = table.name(),
                "the table changed while its schema was evolved; checked again on the next load"
            );
            Ok(Conformed::Raced)
        }
        Err(error) => Err(DeltaError::of(table)(error)),
    }
}

/// The columns of `table` in Delta types, with the `dt` partition column.
pub(crate) fn delta_columns(table: Table) -> Result<Vec<StructField>, DeltaError> {
    let schema = table.schema();
    let converted: StructType =
        schema
            .as_ref()
            .try_into_kernel()
            .map_err(|error: arrow::error::ArrowError| DeltaError::Schema {
                table: table.name(),
                reason: error.to_string(),
            })?;
    let mut columns: Vec<StructField> = converted.fields().cloned().collect();
    columns.push(StructField::new(
        PARTITION_COLUMN,
        DeltaType::Primitive(PrimitiveType::Date),
        true,
    ));
    Ok(columns)
}

/// Creates `table`'s Delta log, version 0.
pub(crate) async fn create_table(
    table: Table,
    log_store: LogStoreRef,
) -> Result<DeltaTable, DeltaTableError> {
    let columns =
        delta_columns(table).map_err(|error| DeltaTableError::Generic(error.to_string()))?;
    deltalake_core::operations::create::CreateBuilder::new()
        .with_log_store(log_store)
        .with_table_name(table.name())
        .with_columns(columns)
        .with_partition_columns([PARTITION_COLUMN])
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
}
