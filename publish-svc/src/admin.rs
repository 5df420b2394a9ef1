//! What `sipbus ctl` shows about publications: the resource records in
//! the store.

use serde::Serialize;
use state_store::{Store, StoreError, now_ms};

use crate::state::ResourceRecord;

/// One live publication, as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub package: String,
    pub resource: String,
    pub etag: String,
    pub content_type: String,
    /// Who published it; empty for state set through the API.
    pub publisher: String,
    /// `None`: set through the API, kept until replaced.
    pub expires_in_s: Option<u64>,
}

/// Publications, up to `max` resource records (`true` when there were
/// more); with a `filter`, those whose resource contains it.
pub async fn publications(store: &Store, filter: &str, max: usize) -> Result<(Vec<Listed>, bool), StoreError> {
    let scanned = store.scan("pub:{", max).await?;
    let now = now_ms();
    let mut out = Vec::new();
    for (key, value) in &scanned.records {
        let Some((package, resource)) = key
            .strip_prefix("pub:{")
            .and_then(|k| k.strip_suffix('}'))
            .and_then(|k| k.split_once(':'))
        else {
            continue;
        };
        if !filter.is_empty() && !resource.contains(filter) {
            continue;
        }
        // A record this version cannot read is skipped, not fatal to a listing.
        let Ok(mut record) = serde_json::from_slice::<ResourceRecord>(value) else {
            continue;
        };
        record.prune(now);
        for p in record.publications {
            out.push(Listed {
                package: package.to_owned(),
                resource: resource.to_owned(),
                expires_in_s: p.expires_at_ms.map(|e| e.saturating_sub(now) / 1000),
                etag: p.etag,
                content_type: p.content_type,
                publisher: p.publisher,
            });
        }
    }
    Ok((out, scanned.truncated))
}
