//! Parses an Azure Storage connection string into the three service endpoints,
//! their credentials, and the words an error uses to say where they are.
//!
//! Our own parser rather than `azure_storage::ConnectionString`: that one does
//! not expand `UseDevelopmentStorage=true`, and its errors quote the whole
//! string, account key included, into the log.

use azure_storage::{CloudLocation, StorageCredentials};
use base64::Engine;

use crate::storage::StorageError;

/// The well-known Azurite account and key (public, documented by Microsoft).
pub(crate) const DEV_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// What to run when Azurite is not there.
pub(crate) const AZURITE_HINT: &str =
    "start it with `npx azurite --silent --location .azurite` (./dev start does this)";

/// What the connection string forms look like, for error messages.
const EXPECTED: &str = "expected `UseDevelopmentStorage=true` or \
    `DefaultEndpointsProtocol=https;AccountName=<name>;AccountKey=<key>;EndpointSuffix=core.windows.net`";

/// One service (queue, table or blob) of the account.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub location: CloudLocation,
    /// "Azurite at 127.0.0.1:10000-10002 (UseDevelopmentStorage=true)", or the URL.
    pub place: String,
    /// What to do when it cannot be reached.
    pub hint: String,
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub credentials: StorageCredentials,
    pub queue: Endpoint,
    pub table: Endpoint,
    pub blob: Endpoint,
}

#[derive(Clone, Copy)]
enum Service {
    Blob,
    Queue,
    Table,
}

impl Service {
    fn subdomain(self) -> &'static str {
        match self {
            Service::Blob => "blob",
            Service::Queue => "queue",
            Service::Table => "table",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Service::Blob => "BlobEndpoint",
            Service::Queue => "QueueEndpoint",
            Service::Table => "TableEndpoint",
        }
    }

    /// Azurite's default ports.
    fn dev_port(self) -> u16 {
        match self {
            Service::Blob => 10000,
            Service::Queue => 10001,
            Service::Table => 10002,
        }
    }
}

fn invalid(message: impl std::fmt::Display) -> StorageError {
    StorageError::Other(format!("storage connection string: {message}"))
}

/// Parse `connection_string`. Errors name the missing or wrong key and never
/// quote a value (it may be a secret).
pub(crate) fn parse(connection_string: &str) -> Result<Account, StorageError> {
    let mut account_name = None;
    let mut account_key = None;
    let mut sas = None;
    let mut protocol = None;
    let mut suffix = None;
    let mut dev = false;
    let mut explicit = [None, None, None]; // blob, queue, table
    let mut other_keys = Vec::new();

    let segments = connection_string
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    for (index, segment) in segments.enumerate() {
        let Some((key, value)) = segment.split_once('=') else {
            return Err(invalid(format!(
                "part {} has no '=' (parts are Key=Value separated by ';'); {EXPECTED}",
                index + 1
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(invalid(format!("{key} has no value")));
        }
        match key.to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => match value.to_ascii_lowercase().as_str() {
                "true" => dev = true,
                "false" => {}
                _ => return Err(invalid("UseDevelopmentStorage must be true or false")),
            },
            "developmentstorageproxyuri" => {
                return Err(invalid(
                    "DevelopmentStorageProxyUri is not supported: give BlobEndpoint, \
                     QueueEndpoint and TableEndpoint with the devstoreaccount1 key instead",
                ));
            }
            "accountname" => account_name = Some(value),
            "accountkey" => account_key = Some(value),
            "sharedaccesssignature" => sas = Some(value),
            "defaultendpointsprotocol" => match value.to_ascii_lowercase().as_str() {
                "http" => protocol = Some("http"),
                "https" => protocol = Some("https"),
                _ => return Err(invalid("DefaultEndpointsProtocol must be http or https")),
            },
            "endpointsuffix" => suffix = Some(value),
            "blobendpoint" => explicit[0] = Some(value),
            "queueendpoint" => explicit[1] = Some(value),
            "tableendpoint" => explicit[2] = Some(value),
            // Valid in Azure's format but not used by this host.
            "fileendpoint"
            | "blobsecondaryendpoint"
            | "queuesecondaryendpoint"
            | "tablesecondaryendpoint"
            | "filesecondaryendpoint" => {}
            _ => {
                return Err(invalid(format!(
                    "unknown key {key:?} (known: AccountName, AccountKey, SharedAccessSignature, \
                     DefaultEndpointsProtocol, EndpointSuffix, BlobEndpoint, QueueEndpoint, \
                     TableEndpoint, UseDevelopmentStorage)"
                )));
            }
        }
        if !key.eq_ignore_ascii_case("usedevelopmentstorage") {
            other_keys.push(key.to_string());
        }
    }

    if dev {
        if !other_keys.is_empty() {
            return Err(invalid(format!(
                "UseDevelopmentStorage=true cannot be combined with {}: for an Azurite on other \
                 ports give AccountName=devstoreaccount1, its key and the three *Endpoint keys",
                other_keys.join(", ")
            )));
        }
        return Ok(development());
    }

    if account_name.is_none() && account_key.is_none() && sas.is_none() && explicit == [None; 3] {
        return Err(invalid(format!("it is empty; {EXPECTED}")));
    }
    let credentials = match (sas, account_name, account_key) {
        (Some(sas), _, _) => StorageCredentials::sas_token(sas).map_err(|e| {
            invalid(format!(
                "SharedAccessSignature is not a valid SAS token ({e})"
            ))
        })?,
        (None, Some(name), Some(key)) => {
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|_| invalid("AccountKey is not base64 (copy it again from the portal)"))?;
            StorageCredentials::access_key(
                name.to_string(),
                azure_core::auth::Secret::new(key.to_string()),
            )
        }
        (None, None, Some(_)) => {
            return Err(invalid(format!("AccountName is missing; {EXPECTED}")));
        }
        (None, _, None) => {
            return Err(invalid(format!(
                "AccountKey (or SharedAccessSignature) is missing; {EXPECTED}"
            )));
        }
    };

    let protocol = protocol.unwrap_or("https");
    let suffix = suffix.unwrap_or("core.windows.net");
    let endpoint = |service: Service, explicit: Option<&str>| -> Result<Endpoint, StorageError> {
        let uri = match (explicit, account_name) {
            (Some(uri), _) => {
                let uri = uri.trim_end_matches('/');
                let url = azure_core::Url::parse(uri)
                    .map_err(|e| invalid(format!("{} is not a URL ({e})", service.key())))?;
                if url.scheme() != "http" && url.scheme() != "https" {
                    return Err(invalid(format!(
                        "{} must start with http:// or https://",
                        service.key()
                    )));
                }
                uri.to_string()
            }
            (None, Some(name)) => format!("{protocol}://{name}.{}.{suffix}", service.subdomain()),
            (None, None) => {
                return Err(invalid(format!(
                    "{} is missing and there is no AccountName to derive it from",
                    service.key()
                )));
            }
        };
        let (place, hint) = match account_name {
            Some(name) if explicit.is_none() => (
                format!("storage account {name:?} at {uri}"),
                "check the network, and AccountName and EndpointSuffix in the connection string"
                    .to_string(),
            ),
            _ => (
                format!("the {} service at {uri}", service.subdomain()),
                format!(
                    "is it running? check {} in the connection string",
                    service.key()
                ),
            ),
        };
        Ok(Endpoint {
            location: CloudLocation::Custom {
                account: account_name.unwrap_or("(from the SAS)").to_string(),
                uri,
            },
            place,
            hint,
        })
    };
    Ok(Account {
        credentials,
        blob: endpoint(Service::Blob, explicit[0])?,
        queue: endpoint(Service::Queue, explicit[1])?,
        table: endpoint(Service::Table, explicit[2])?,
    })
}

/// `UseDevelopmentStorage=true`: Azurite's well-known account on its default ports.
fn development() -> Account {
    let endpoint = |service: Service| Endpoint {
        location: CloudLocation::Emulator {
            address: "127.0.0.1".to_string(),
            port: service.dev_port(),
        },
        place: "Azurite at 127.0.0.1:10000-10002 (UseDevelopmentStorage=true)".to_string(),
        hint: AZURITE_HINT.to_string(),
    };
    Account {
        credentials: StorageCredentials::access_key(
            DEV_ACCOUNT,
            azure_core::auth::Secret::new(DEV_KEY),
        ),
        blob: endpoint(Service::Blob),
        queue: endpoint(Service::Queue),
        table: endpoint(Service::Table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_storage::clients::ServiceType;

    fn url(endpoint: &Endpoint, service: ServiceType) -> String {
        endpoint.location.url(service).unwrap().to_string()
    }

    fn error(connection_string: &str) -> String {
        match parse(connection_string) {
            Err(StorageError::Other(message)) => message,
            other => panic!("expected an error for {connection_string:?}, got {other:?}"),
        }
    }

    #[test]
    fn development_storage_is_azurite_on_its_default_ports() {
        let account = parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            url(&account.blob, ServiceType::Blob),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(
            url(&account.queue, ServiceType::Queue),
            "http://127.0.0.1:10001/devstoreaccount1"
        );
        assert_eq!(
            url(&account.table, ServiceType::Table),
            "http://127.0.0.1:10002/devstoreaccount1"
        );
        assert!(account.queue.place.contains("UseDevelopmentStorage=true"));
        assert!(parse(" UseDevelopmentStorage=true; ").is_ok());
    }

    #[test]
    fn an_account_gets_endpoints_from_its_name_and_suffix() {
        let account = parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={DEV_KEY};EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(
            url(&account.queue, ServiceType::Queue),
            "https://acct.queue.core.chinacloudapi.cn/"
        );
        assert_eq!(
            url(&account.table, ServiceType::Table),
            "https://acct.table.core.chinacloudapi.cn/"
        );
        assert!(account.blob.place.contains("\"acct\""));
        let account = parse(&format!("AccountName=acct;AccountKey={DEV_KEY}")).unwrap();
        assert_eq!(
            url(&account.blob, ServiceType::Blob),
            "https://acct.blob.core.windows.net/"
        );
    }

    #[test]
    fn explicit_endpoints_win() {
        let account = parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};\
             BlobEndpoint=http://127.0.0.1:4000/devstoreaccount1;\
             QueueEndpoint=http://127.0.0.1:4001/devstoreaccount1/;\
             TableEndpoint=http://127.0.0.1:4002/devstoreaccount1"
        ))
        .unwrap();
        assert_eq!(
            url(&account.queue, ServiceType::Queue),
            "http://127.0.0.1:4001/devstoreaccount1"
        );
        assert_eq!(
            account.table.place,
            "the table service at http://127.0.0.1:4002/devstoreaccount1"
        );
    }

    #[test]
    fn malformed_strings_name_what_is_wrong_and_never_the_key() {
        assert!(error("").contains("it is empty"));
        assert!(
            error("AccountName=acct").contains("AccountKey (or SharedAccessSignature) is missing")
        );
        assert!(error(&format!("AccountKey={DEV_KEY}")).contains("AccountName is missing"));
        assert!(
            error("AccountName=acct;AccountKey=not base64!").contains("AccountKey is not base64")
        );
        assert!(error("AccountName=acct;AcountKey=abc").contains("unknown key \"AcountKey\""));
        assert!(error("UseDevelopmentStorage=yes").contains("true or false"));
        assert!(
            error(&format!(
                "UseDevelopmentStorage=true;AccountName=a;AccountKey={DEV_KEY}"
            ))
            .contains("cannot be combined with AccountName, AccountKey")
        );
        assert!(
            error(&format!(
                "AccountKey={DEV_KEY};QueueEndpoint=http://x;SharedAccessSignature=sv=1"
            ))
            .contains("BlobEndpoint is missing")
        );
        let message = error("secretsecret");
        assert!(message.contains("part 1 has no '='") && !message.contains("secretsecret"));
        let message = error(&format!(
            "AccountName=acct;AccountKey={DEV_KEY};QueueEndpoint=ftp://x"
        ));
        assert!(
            message.contains("QueueEndpoint must start with http") && !message.contains(DEV_KEY)
        );
    }
}
