//! Where keys live: blobs `azure-webjobs-secrets/{hostId}/host.json` and
//! `{hostId}/{function}.json` in `AzureWebJobsStorage`
//! (`AzureWebJobsSecretStorageType = blob`, the default), or the same files in
//! a folder (`files`). The host id follows Azure's rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{Blobs, StorageError};

/// Azure's container for keys.
pub const CONTAINER: &str = "azure-webjobs-secrets";
/// The folder (under the script root) of `AzureWebJobsSecretStorageType = files`.
pub const FILES_DIR: &str = ".host-secrets";
/// Azure's limit on host ids.
const MAX_HOST_ID: usize = 32;

/// Why keys could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the file since we read it (or created it first).
    #[error("{0} was changed by another host meanwhile")]
    Conflict(String),
    #[error("{place}: {message}")]
    Failed { place: String, message: String },
    /// The file is not in Azure's shape.
    #[error("{place} is not a valid secrets file: {message}")]
    Invalid { place: String, message: String },
}

/// A store of secrets files, by file name (`host.json`, `hello.json`).
#[derive(Clone)]
pub enum SecretStore {
    Blob {
        blobs: Arc<dyn Blobs>,
        host_id: String,
    },
    Files {
        dir: PathBuf,
    },
}

/// A file's bytes and the version to give back to [`SecretStore::write`].
pub type Versioned = (Vec<u8>, Option<String>);

impl SecretStore {
    /// Where `file` is, for messages: `azure-webjobs-secrets/myapp/host.json`.
    pub fn place(&self, file: &str) -> String {
        match self {
            SecretStore::Blob { host_id, .. } => format!("{CONTAINER}/{host_id}/{file}"),
            SecretStore::Files { dir } => dir.join(file).display().to_string(),
        }
    }

    /// Where every file is, for the console.
    pub fn describe(&self) -> String {
        match self {
            SecretStore::Blob { host_id, .. } => {
                format!("blob container '{CONTAINER}' under '{host_id}/' of AzureWebJobsStorage")
            }
            SecretStore::Files { dir } => format!("files in {}", dir.display()),
        }
    }

    fn failed(&self, file: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            place: self.place(file),
            message: e.to_string(),
        }
    }

    /// The file and its version; None if it does not exist.
    pub async fn read(&self, file: &str) -> Result<Option<Versioned>, StoreError> {
        match self {
            SecretStore::Blob { blobs, host_id } => {
                match blobs.get(CONTAINER, &format!("{host_id}/{file}")).await {
                    Ok(found) => Ok(found.map(|(data, etag)| (data, Some(etag)))),
                    // The container is created on the first write.
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(e) => Err(self.failed(file, e)),
                }
            }
            SecretStore::Files { dir } => match std::fs::read(dir.join(file)) {
                Ok(data) => Ok(Some((data, None))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.failed(file, e)),
            },
        }
    }

    /// Write `file`: create it when `version` is None (Conflict if it exists
    /// by then), else replace it only if it is still that version.
    pub async fn write(
        &self,
        file: &str,
        data: Vec<u8>,
        version: Option<&str>,
        exists: bool,
    ) -> Result<(), StoreError> {
        match self {
            SecretStore::Blob { blobs, host_id } => {
                let name = format!("{host_id}/{file}");
                let put = |blobs: Arc<dyn Blobs>, data: Vec<u8>| {
                    let name = name.clone();
                    let version = version.map(str::to_string);
                    async move {
                        match version {
                            Some(etag) => blobs.put_if_match(CONTAINER, &name, data, &etag).await,
                            None => blobs.put_if_absent(CONTAINER, &name, data).await,
                        }
                    }
                };
                let mut result = put(blobs.clone(), data.clone()).await;
                if matches!(&result, Err(StorageError::NotFound(_))) {
                    // First key of this storage account: create the container.
                    blobs
                        .create_container(CONTAINER)
                        .await
                        .map_err(|e| self.failed(file, e))?;
                    result = put(blobs.clone(), data).await;
                }
                match result {
                    Ok(()) => Ok(()),
                    Err(StorageError::Conflict(_)) => Err(StoreError::Conflict(self.place(file))),
                    Err(e) => Err(self.failed(file, e)),
                }
            }
            SecretStore::Files { dir } => {
                let path = dir.join(file);
                if !exists && path.exists() {
                    return Err(StoreError::Conflict(self.place(file)));
                }
                write_file(dir, &path, &data).map_err(|e| self.failed(file, e))
            }
        }
    }

    /// Names of the function secrets files (every `*.json` but `host.json`).
    pub async fn function_files(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = match self {
            SecretStore::Blob { blobs, host_id } => {
                match blobs.list(CONTAINER, &format!("{host_id}/")).await {
                    Ok(list) => list
                        .into_iter()
                        .filter_map(|(n, _)| n.rsplit('/').next().map(str::to_string))
                        .collect(),
                    Err(StorageError::NotFound(_)) => Vec::new(),
                    Err(e) => return Err(self.failed("", e)),
                }
            }
            SecretStore::Files { dir } => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.failed("", e)),
            },
        };
        names.retain(|n| n.ends_with(".json") && n != "host.json");
        names.sort();
        Ok(names)
    }
}

/// Write via a temporary file and a rename, so a reader never sees half a
/// file; the folder gets a `.gitignore` so keys are not committed by accident.
fn write_file(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# keys: never commit them\n*\n")?;
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}

/// Azure's host id: `AzureFunctionsWebHost__hostid` when set (validated:
/// 1-32 lower-case letters, digits and dashes, no leading, trailing or double
/// dash), else derived from `WEBSITE_SITE_NAME`, else from the task hub name,
/// which every host of one app shares (lower-cased, cut to 32 characters,
/// trailing dashes trimmed, as Azure derives it).
pub fn host_id(setting: impl Fn(&str) -> Option<String>, hub: &str) -> Result<String, String> {
    let explicit = setting("AzureFunctionsWebHost__hostid")
        .or_else(|| setting("AzureFunctionsWebHost:hostid"));
    if let Some(id) = explicit.filter(|v| !v.is_empty()) {
        let ok = id.len() <= MAX_HOST_ID
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !id.starts_with('-')
            && !id.ends_with('-')
            && !id.contains("--");
        if !ok {
            return Err(format!(
                "AzureFunctionsWebHost__hostid '{id}' is not a valid host id: 1 to 32 lower-case letters, \
                 digits and dashes, not starting or ending with a dash, no double dashes"
            ));
        }
        return Ok(id);
    }
    let base = setting("WEBSITE_SITE_NAME")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| hub.to_string());
    let mut id: String = base
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(MAX_HOST_ID)
        .collect();
    while id.ends_with('-') {
        id.pop();
    }
    if id.is_empty() {
        id = "fnhost".into();
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn host_ids_follow_azure() {
        assert_eq!(host_id(none, "TestHubName").unwrap(), "testhubname");
        let site = |k: &str| (k == "WEBSITE_SITE_NAME").then(|| "TEST-FUNCTIONS--".to_string());
        assert_eq!(host_id(site, "hub").unwrap(), "test-functions");
        let long = |k: &str| {
            (k == "WEBSITE_SITE_NAME").then(|| "TEST-FUNCTIONS-XXXXXXXXXXXXXXXX-XXXX".to_string())
        };
        assert_eq!(
            host_id(long, "hub").unwrap(),
            "test-functions-xxxxxxxxxxxxxxxx"
        );
        let given = |k: &str| (k == "AzureFunctionsWebHost__hostid").then(|| "my-app".to_string());
        assert_eq!(host_id(given, "hub").unwrap(), "my-app");
        let bad = |k: &str| (k == "AzureFunctionsWebHost__hostid").then(|| "My--App".to_string());
        let e = host_id(bad, "hub").unwrap_err();
        assert!(e.contains("AzureFunctionsWebHost__hostid 'My--App'"), "{e}");
    }
}
