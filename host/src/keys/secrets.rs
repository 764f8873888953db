//! The secrets files in Azure Functions' JSON shapes (`host.json` and
//! `{function}.json`), and new key values.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The master key's name in the admin API (`/admin/host/keys/_master`).
pub const MASTER: &str = "_master";
/// The system key the Durable Functions webhooks accept (Azure's name).
pub const DURABLE_SYSTEM_KEY: &str = "durabletask_extension";
/// The key every host and function starts with.
pub const DEFAULT: &str = "default";

/// One key: `{"name": "default", "value": "...", "encrypted": false}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Key {
    pub name: String,
    pub value: String,
    /// Azure encrypts values with the app's machine key; such values cannot be
    /// read here and are skipped (with a warning).
    #[serde(default)]
    pub encrypted: bool,
}

impl Key {
    pub fn new(name: &str, value: String) -> Key {
        Key {
            name: name.to_string(),
            value,
            encrypted: false,
        }
    }
}

/// `azure-webjobs-secrets/{hostId}/host.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSecrets {
    pub master_key: Key,
    /// Host keys: accepted by every function-level function.
    #[serde(default)]
    pub function_keys: Vec<Key>,
    #[serde(default)]
    pub system_keys: Vec<Key>,
    /// `hostName`, `instanceId`, `source`, `decryptionKeyId` and anything else
    /// Azure wrote: kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `azure-webjobs-secrets/{hostId}/{function}.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionSecrets {
    #[serde(default)]
    pub keys: Vec<Key>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What Azure writes beside the keys.
fn written_by_us() -> Map<String, Value> {
    let mut m = Map::new();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    m.insert("hostName".into(), Value::String(host));
    m.insert(
        "instanceId".into(),
        Value::String(uuid::Uuid::new_v4().simple().to_string()),
    );
    m.insert("source".into(), Value::String("runtime".into()));
    m.insert("decryptionKeyId".into(), Value::String(String::new()));
    m
}

impl HostSecrets {
    /// A new master key and a `default` host key, as Azure creates them.
    pub fn generate() -> HostSecrets {
        HostSecrets {
            master_key: Key::new("master", new_value()),
            function_keys: vec![Key::new(DEFAULT, new_value())],
            system_keys: Vec::new(),
            other: written_by_us(),
        }
    }
}

impl FunctionSecrets {
    /// A `default` key, as Azure creates it on a function's first use.
    pub fn generate() -> FunctionSecrets {
        FunctionSecrets {
            keys: vec![Key::new(DEFAULT, new_value())],
            other: written_by_us(),
        }
    }
}

/// A new key value from the OS's CSPRNG, shaped like Azure's identifiable
/// keys: 40 bytes as URL-safe base64 with its `==` padding (56 characters),
/// `AzFu` at characters 44-47. 296 random bits; Azure's Marvin checksum in
/// the last characters is not reproduced (nothing here checks it).
pub fn new_value() -> String {
    let mut bytes = [0u8; 40];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    let mut text = base64::engine::general_purpose::URL_SAFE.encode(bytes);
    text.replace_range(44..48, "AzFu");
    text
}

/// Key names: what Azure's admin API accepts in a URL segment.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Key values given by a user: printable ASCII without spaces or `&`/`#`
/// (they travel in `?code=`), 16 to 256 characters.
pub fn valid_value(value: &str) -> bool {
    (16..=256).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !"&#%?".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_look_like_azure_keys() {
        let a = new_value();
        let b = new_value();
        assert_ne!(a, b);
        assert_eq!(a.len(), 56, "{a}");
        assert!(a.ends_with("=="), "{a}");
        assert_eq!(&a[44..48], "AzFu");
        assert!(valid_value(&a), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=".contains(c))
        );
    }

    #[test]
    fn host_json_round_trips_in_azure_shape() {
        let text = r#"{"masterKey":{"name":"master","value":"m","encrypted":false},
            "functionKeys":[{"name":"default","value":"d","encrypted":false}],
            "systemKeys":[],"hostName":"app.azurewebsites.net","instanceId":"x",
            "source":"runtime","decryptionKeyId":""}"#;
        let s: HostSecrets = serde_json::from_str(text).unwrap();
        assert_eq!(s.master_key.value, "m");
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["hostName"], "app.azurewebsites.net");
        assert_eq!(back["functionKeys"][0]["name"], "default");
        assert_eq!(back["masterKey"]["encrypted"], false);
        let fresh = serde_json::to_value(HostSecrets::generate()).unwrap();
        assert_eq!(fresh["masterKey"]["name"], "master");
        assert_eq!(fresh["source"], "runtime");
        assert!(fresh["systemKeys"].as_array().unwrap().is_empty());
    }

    #[test]
    fn names_and_values() {
        assert!(valid_name("my-key_1.x"));
        assert!(!valid_name("a/b") && !valid_name(""));
        assert!(!valid_value("short"));
        assert!(!valid_value("has a space in it, long enough"));
        assert!(valid_value("abcdefghijklmnop/+=="));
    }
}
