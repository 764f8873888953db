//! Hot reload: watch the functions directory and resync the catalog when it changes.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{Catalog, Change};

/// Events within this window are handled as one: copying a folder writes
/// several files, and a half-copied folder should not be reported as broken.
const SETTLE: Duration = Duration::from_millis(150);

/// Watch the catalog's directory; `report` receives every change. The returned
/// watcher stops watching when dropped.
pub fn watch(
    catalog: Arc<Catalog>,
    report: impl Fn(Vec<Change>) + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(catalog.dir(), RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait until the directory is quiet for SETTLE.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let changes = catalog.sync().await;
            if !changes.is_empty() {
                report(changes);
            }
        }
    });
    Ok(watcher)
}
