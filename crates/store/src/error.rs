#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("resource not found")]
    NotFound,
    #[error("resource deleted")]
    Gone,
    #[error("the resource was changed by another request")]
    VersionConflict,
    #[error("a resource with this id already exists")]
    Duplicate,
    #[error("one-time action {0} was already done")]
    AlreadyClaimed(String),
    #[error("the resource has no {0}")]
    MissingField(&'static str),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("the stored {0} is invalid")]
    InvalidStoredValue(&'static str),
    #[error("stored JSON is invalid: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}
