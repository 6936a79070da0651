//! Why a Delta table could not be read or written, classified where the
//! error is made: what retrying cannot help is permanent.

use deltalake_core::kernel::transaction::TransactionError;
use deltalake_core::DeltaTableError;
use schemas::Table;

use crate::store::LakeError;

/// Why a Delta table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("delta table {table}: {source}")]
    /// The Delta library or the store behind it failed.
    Table {
        /// The table's name.
        table: &'static str,
        /// Why.
        source: Box<DeltaTableError>,
    },
    #[error("delta table {table}: column {column} is {found} in the table but {wanted} in the sink's schema")]
    /// A column's type in the table differs from the sink's.
    SchemaConflict {
        /// The table's name.
        table: &'static str,
        /// The column.
        column: String,
        /// Its type in the table.
        found: String,
        /// Its type in the sink's schema.
        wanted: String,
    },
    #[error("delta table {table}: reading or writing its log: {source}")]
    /// The store failed a read or write of the log.
    Store {
        /// The table's name.
        table: &'static str,
        /// Why.
        source: LakeError,
    },
    #[error("delta table {table}: the schema does not convert: {reason}")]
    /// A column type has no Delta equivalent.
    Schema {
        /// The table's name.
        table: &'static str,
        /// Why.
        reason: String,
    },
}

impl DeltaError {
    pub(crate) fn of(table: Table) -> impl FnOnce(DeltaTableError) -> DeltaError {
        move |source| DeltaError::Table {
            table: table.name(),
            source: Box::new(source),
        }
    }

    pub(crate) fn store(table: Table, source: LakeError) -> DeltaError {
        DeltaError::Store {
            table: table.name(),
            source,
        }
    }

    /// True when repeating the request cannot help: the store refuses the
    /// credentials, or the log holds something this sink cannot use.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeltaError::Schema { .. } | DeltaError::SchemaConflict { .. } => true,
            DeltaError::Store { source, .. } => source.is_permanent(),
            DeltaError::Table { source, .. } => match source.as_ref() {
                DeltaTableError::ObjectStore { source } => matches!(
                    source,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ),
                // A log this sink cannot use (features it does not
                // support, entries it cannot read): repeating cannot help.
                DeltaTableError::KernelError(error) => is_unreadable_log(error),
                DeltaTableError::InvalidTableLocation(_)
                | DeltaTableError::MissingFeature { .. }
                | DeltaTableError::SchemaMismatch { .. }
                | DeltaTableError::InvalidJsonLog { .. }
                | DeltaTableError::InvalidData { .. }
                | DeltaTableError::InvalidVersion(_)
                | DeltaTableError::Transaction {
                    source:
                        TransactionError::UnsupportedTableFeatures(_)
                        | TransactionError::TableFeaturesRequired(_)
                        | TransactionError::DeltaTableAppendOnly,
                } => true,
                _ => false,
            },
        }
    }
}

/// True for a kernel error that says the log asks for what this library
/// cannot do (a reader or writer feature it does not know, a protocol it
/// does not support), or is not a Delta log it can read: no retry helps.
fn is_unreadable_log(error: &delta_kernel::error::Error) -> bool {
    use delta_kernel::error::Error;
    matches!(
        error,
        Error::Unsupported(_)
            | Error::InvalidProtocol(_)
            | Error::MissingProtocol
            | Error::MissingMetadata
            | Error::MissingMetadataAndProtocol
            | Error::InvalidTableLocation(_)
            | Error::InvalidLogPath(_)
            | Error::InvalidCheckpoint(_)
            | Error::ChangeDataFeedUnsupported(_)
    )
}
