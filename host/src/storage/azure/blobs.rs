//! [`Blobs`] on Azure Blob storage (azure_storage_blobs): block blobs and
//! their leases.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::request_options::{IfMatchCondition, LeaseDuration, LeaseId, Metadata};
use azure_storage_blobs::prelude::{BlobClient, BlobServiceClient};
use futures::StreamExt;

use super::connection::Endpoint;
use super::health::Health;
use super::transport::{classify, status_of, tracking};
use crate::storage::{BlobItem, Blobs, PutOptions, Result, StorageError};

/// Read a blob in one request: the crate's default is 1 MiB ranges, one
/// request (and one billed transaction) each, and pages of a blob that changes
/// between them would mix versions. 256 MiB is far above what the host stores.
const ONE_READ: u64 = 256 << 20;

/// The blob containers of one storage account.
pub(crate) struct AzureBlobs {
    pub client: BlobServiceClient,
    pub endpoint: Endpoint,
    pub health: Arc<Health>,
}

/// ETags without quotes: blob listings give `0x8D…`, response headers `"0x8D…"`;
/// one form lets a caller compare a listed ETag with a read one.
fn bare(etag: impl ToString) -> String {
    etag.to_string().trim_matches('"').to_string()
}

/// A listed or read blob as [`BlobItem`].
fn item(b: &azure_storage_blobs::blob::Blob) -> BlobItem {
    BlobItem {
        name: b.name.clone(),
        etag: bare(&b.properties.etag),
        length: b.properties.content_length,
        content_type: b.properties.content_type.clone(),
        last_modified: std::time::SystemTime::from(b.properties.last_modified),
        metadata: b
            .metadata
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    }
}

impl AzureBlobs {
    fn blob(&self, container: &str, name: &str) -> BlobClient {
        self.client.container_client(container).blob_client(name)
    }

    fn error(&self, error: azure_core::Error, what: String) -> StorageError {
        self.health.note(classify(error, &what, &self.endpoint))
    }

    /// An empty blob's (empty) content and ETag: one more call.
    async fn empty_blob(&self, container: &str, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        match self.blob(container, name).get_properties().await {
            Ok(response) => Ok(Some((Vec::new(), bare(&response.blob.properties.etag)))),
            Err(e) if matches!(status_of(&e), Some((404, _))) => Ok(None), // deleted meanwhile
            Err(e) => Err(self.error(e, format!("reading blob '{container}/{name}'"))),
        }
    }

    /// A conditional write that met a conflict after a retry: its first
    /// attempt may have been applied with its answer lost. If the blob holds
    /// exactly `data`, the write is ours: Ok.
    async fn unless_ours(
        &self,
        container: &str,
        name: &str,
        data: &[u8],
        retried: bool,
        result: Result<()>,
    ) -> Result<()> {
        match result {
            Err(StorageError::Conflict(_)) if retried => match self.get(container, name).await? {
                Some((stored, _)) if stored == data => Ok(()),
                _ => result,
            },
            other => other,
        }
    }

    fn lease_id(container: &str, name: &str, lease_id: &str) -> Result<LeaseId> {
        lease_id.parse().map_err(|_| {
            StorageError::Other(format!(
                "blob '{container}/{name}': lease id {lease_id:?} is not one acquire_lease returned (a UUID)"
            ))
        })
    }
}

#[async_trait]
impl Blobs for AzureBlobs {
    async fn create_container(&self, container: &str) -> Result<()> {
        match self.client.container_client(container).create().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some((409, _))) => Ok(()), // ContainerAlreadyExists
            Err(e) => Err(self.error(e, format!("creating container '{container}'"))),
        }
    }

    async fn delete_container(&self, container: &str) -> Result<()> {
        self.client
            .container_client(container)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, format!("deleting container '{container}'")))
    }

    async fn put(&self, container: &str, name: &str, data: Vec<u8>) -> Result<()> {
        self.blob(container, name)
            .put_block_blob(data)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, format!("writing blob '{container}/{name}'")))
    }

    async fn put_if_absent(&self, container: &str, name: &str, data: Vec<u8>) -> Result<()> {
        let data = bytes::Bytes::from(data);
        let put = self
            .blob(container, name)
            .put_block_blob(data.clone())
            .if_match(IfMatchCondition::NotMatch("*".to_string()))
            .into_future();
        let (result, retried) = tracking(put).await;
        let result = result
            .map(|_| ())
            .map_err(|e| self.error(e, format!("creating blob '{container}/{name}'")));
        self.unless_ours(container, name, &data, retried, result)
            .await
    }

    async fn put_if_match(
        &self,
        container: &str,
        name: &str,
        data: Vec<u8>,
        etag: &str,
    ) -> Result<()> {
        // Listed and read ETags come bare; the header wants the quoted form.
        let data = bytes::Bytes::from(data);
        let put = self
            .blob(container, name)
            .put_block_blob(data.clone())
            .if_match(IfMatchCondition::Match(format!("\"{etag}\"")))
            .into_future();
        let (result, retried) = tracking(put).await;
        let result = result
            .map(|_| ())
            .map_err(|e| self.error(e, format!("updating blob '{container}/{name}'")));
        self.unless_ours(container, name, &data, retried, result)
            .await
    }

    async fn get(&self, container: &str, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        let mut pages = self
            .blob(container, name)
            .get()
            .chunk_size(ONE_READ)
            .into_stream();
        let mut data = Vec::new();
        let mut etag = None;
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // BlobNotFound is a missing blob; ContainerNotFound stays an error.
                Err(e) if matches!(status_of(&e), Some((404, Some("BlobNotFound")))) => {
                    return Ok(None);
                }
                // A range read of an empty blob is 416: ask for its ETag alone.
                Err(e) if etag.is_none() && matches!(status_of(&e), Some((416, _))) => {
                    return self.empty_blob(container, name).await;
                }
                Err(e) => return Err(self.error(e, format!("reading blob '{container}/{name}'"))),
            };
            etag.get_or_insert_with(|| bare(&page.blob.properties.etag));
            let bytes = page
                .data
                .collect()
                .await
                .map_err(|e| self.error(e, format!("reading blob '{container}/{name}'")))?;
            data.extend_from_slice(&bytes);
        }
        Ok(etag.map(|etag| (data, etag)))
    }

    async fn delete(&self, container: &str, name: &str) -> Result<()> {
        self.blob(container, name)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, format!("deleting blob '{container}/{name}'")))
    }

    async fn list(&self, container: &str, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut pages = self
            .client
            .container_client(container)
            .list_blobs()
            .prefix(prefix.to_string())
            .into_stream();
        let mut blobs = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.error(e, format!("listing container '{container}'")))?;
            blobs.extend(
                page.blobs
                    .blobs()
                    .map(|b| (b.name.clone(), bare(&b.properties.etag))),
            );
        }
        Ok(blobs)
    }

    async fn list_items(
        &self,
        container: &str,
        prefix: &str,
        metadata: bool,
    ) -> Result<Vec<BlobItem>> {
        let mut pages = self
            .client
            .container_client(container)
            .list_blobs()
            .prefix(prefix.to_string())
            .include_metadata(metadata)
            .into_stream();
        let mut blobs = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.error(e, format!("listing container '{container}'")))?;
            blobs.extend(page.blobs.blobs().map(item));
        }
        Ok(blobs)
    }

    async fn properties(&self, container: &str, name: &str) -> Result<Option<BlobItem>> {
        match self.blob(container, name).get_properties().await {
            Ok(response) => {
                let mut blob = response.blob;
                blob.name = name.to_string();
                Ok(Some(item(&blob)))
            }
            Err(e) if matches!(status_of(&e), Some((404, _))) => Ok(None),
            Err(e) => Err(self.error(e, format!("reading blob '{container}/{name}'"))),
        }
    }

    async fn put_with(
        &self,
        container: &str,
        name: &str,
        data: Vec<u8>,
        options: &PutOptions,
    ) -> Result<()> {
        let data = bytes::Bytes::from(data);
        let mut put = self.blob(container, name).put_block_blob(data.clone());
        if let Some(content_type) = &options.content_type {
            put = put.content_type(content_type.clone());
        }
        if !options.metadata.is_empty() {
            let mut metadata = Metadata::new();
            for (k, v) in &options.metadata {
                metadata.insert(k.clone(), v.clone());
            }
            put = put.metadata(metadata);
        }
        if options.if_absent {
            put = put.if_match(IfMatchCondition::NotMatch("*".to_string()));
        }
        if let Some(lease) = &options.lease_id {
            put = put.lease_id(Self::lease_id(container, name, lease)?);
        }
        let (result, retried) = tracking(put.into_future()).await;
        let result = result
            .map(|_| ())
            .map_err(|e| self.error(e, format!("writing blob '{container}/{name}'")));
        self.unless_ours(container, name, &data, retried, result)
            .await
    }

    async fn acquire_lease(
        &self,
        container: &str,
        name: &str,
        duration: Duration,
    ) -> Result<Option<String>> {
        // Azure takes 15-60 s, or -1 for a lease until released (Duration::MAX here).
        let duration = match duration.as_secs() {
            _ if duration == Duration::MAX => LeaseDuration::Infinite,
            s @ 15..=60 => LeaseDuration::Seconds(s as u8),
            s => {
                return Err(StorageError::Other(format!(
                    "blob '{container}/{name}': a lease of {s} s is outside Azure's 15-60 s"
                )));
            }
        };
        // Our own lease id, so that a retry whose first attempt took the lease
        // (its answer lost) is answered with that lease, not "already leased".
        let proposed: LeaseId = uuid::Uuid::new_v4()
            .to_string()
            .parse()
            .expect("a UUID is a lease id");
        match self
            .blob(container, name)
            .acquire_lease(duration)
            .proposed_lease_id(proposed)
            .await
        {
            Ok(response) => Ok(Some(response.lease_id.to_string())),
            Err(e) if matches!(status_of(&e), Some((409, _))) => Ok(None), // LeaseAlreadyPresent
            Err(e) => Err(self.error(e, format!("leasing blob '{container}/{name}'"))),
        }
    }

    /// A renewal answered 409 (another lease id holds it, or it was broken)
    /// or 404 (the blob is gone) means the lease is lost: `false`.
    async fn renew_lease(&self, container: &str, name: &str, lease_id: &str) -> Result<bool> {
        let id = Self::lease_id(container, name, lease_id)?;
        match self
            .blob(container, name)
            .blob_lease_client(id)
            .renew()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(status_of(&e), Some((404 | 409 | 412, _))) => Ok(false),
            Err(e) => Err(self.error(
                e,
                format!("renewing the lease on blob '{container}/{name}'"),
            )),
        }
    }

    async fn release_lease(&self, container: &str, name: &str, lease_id: &str) -> Result<()> {
        let id = Self::lease_id(container, name, lease_id)?;
        self.blob(container, name)
            .blob_lease_client(id)
            .release()
            .await
            .map(|_| ())
            .map_err(|e| {
                self.error(
                    e,
                    format!("releasing the lease on blob '{container}/{name}'"),
                )
            })
    }
}
