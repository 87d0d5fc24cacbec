//! [pure] `cloud-sa.json` (the CCM's Secret `metal-cloud-config`) and the environment variables
//! that override it. The API key is a [`SecretString`] from the moment it is read: it never
//! reaches `Debug`, `Display`, an error or a log.
//!
//! Go's `encoding/json` matches field names case-insensitively, so the CCM accepts `projectID`
//! (its docs) and `projectId` (its struct tag) alike; so do we, for every field.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// The API since 2020-10 (before: `https://api.packet.net`).
pub const DEFAULT_BASE_URL: &str = "https://api.equinix.com/metal/v1";

/// What the Metal API provider needs to talk to the API.
#[derive(Clone)]
pub struct CloudConfig {
    /// `X-Auth-Token`. Shared, never printed.
    pub api_key: Arc<SecretString>,
    pub project_id: String,
    /// Without a trailing `/`.
    pub base_url: String,
}

impl fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudConfig")
            .field("api_key", &"[REDACTED]")
            .field("project_id", &self.project_id)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// The environment variables that override `cloud-sa.json`, read by the caller (so parsing
/// stays pure). Empty values count as unset.
#[derive(Default)]
pub struct MetalEnv {
    /// `METAL_API_KEY` (CCM).
    pub metal_api_key: Option<SecretString>,
    /// `PACKET_AUTH_TOKEN` (kube-vip ≤ 0.8).
    pub packet_auth_token: Option<SecretString>,
    /// `PACKET_API_KEY` (packet-ccm).
    pub packet_api_key: Option<SecretString>,
    /// `METAL_PROJECT_ID` (CCM).
    pub metal_project_id: Option<String>,
    /// `PACKET_PROJECT_ID` (packet-ccm).
    pub packet_project_id: Option<String>,
    /// `vip_packetprojectid` (kube-vip ≤ 0.8, `--metalProjectID`).
    pub vip_packetprojectid: Option<String>,
}

impl fmt::Debug for MetalEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &Option<SecretString>| if s.is_some() { "[REDACTED]" } else { "unset" };
        f.debug_struct("MetalEnv")
            .field("metal_api_key", &set(&self.metal_api_key))
            .field("packet_auth_token", &set(&self.packet_auth_token))
            .field("packet_api_key", &set(&self.packet_api_key))
            .field("metal_project_id", &self.metal_project_id)
            .field("packet_project_id", &self.packet_project_id)
            .field("vip_packetprojectid", &self.vip_packetprojectid)
            .finish()
    }
}

impl MetalEnv {
    /// Reads the variables through `get` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> MetalEnv {
        let text = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let secret = |k: &str| text(k).map(SecretString::from);
        MetalEnv {
            metal_api_key: secret("METAL_API_KEY"),
            packet_auth_token: secret("PACKET_AUTH_TOKEN"),
            packet_api_key: secret("PACKET_API_KEY"),
            metal_project_id: text("METAL_PROJECT_ID"),
            packet_project_id: text("PACKET_PROJECT_ID"),
            vip_packetprojectid: text("vip_packetprojectid"),
        }
    }
}

/// Why the configuration is unusable. Never contains the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudConfigError {
    #[error("cloud-sa.json is not a JSON object: {0}")]
    NotJson(String),
    #[error("cloud-sa.json: field {field} must be a string")]
    NotAString { field: &'static str },
    #[error("no Equinix Metal API key: set apiKey in cloud-sa.json, or METAL_API_KEY (PACKET_AUTH_TOKEN)")]
    NoApiKey,
    #[error("no Equinix Metal project: set projectID in cloud-sa.json, or METAL_PROJECT_ID")]
    NoProject,
    #[error("Equinix Metal project id {0:?} is not a project UUID")]
    BadProject(String),
    #[error("Equinix Metal API base URL {0:?} is not an http(s) URL")]
    BadBaseUrl(String),
}

impl CloudConfig {
    /// Builds the configuration from the file's text (`None`: no file) and the environment.
    /// Environment beats file: `METAL_API_KEY` > `PACKET_AUTH_TOKEN` > `PACKET_API_KEY` >
    /// `apiKey`; `METAL_PROJECT_ID` > `PACKET_PROJECT_ID` > `vip_packetprojectid` > `projectID`
    /// (or `projectId`); the base URL is the file's `base-url`, else [`DEFAULT_BASE_URL`].
    pub fn from_parts(file: Option<&str>, env: MetalEnv) -> Result<CloudConfig, CloudConfigError> {
        let fields = match file {
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                // serde_json's messages give line and column, never the document's content.
                Ok(_) => return Err(CloudConfigError::NotJson("not an object".into())),
                Err(e) => return Err(CloudConfigError::NotJson(e.to_string())),
            },
            None => Map::new(),
        };
        let file_key = string_field(&fields, "apiKey")?.map(SecretString::from);
        let api_key = env
            .metal_api_key
            .or(env.packet_auth_token)
            .or(env.packet_api_key)
            .or(file_key)
            .filter(|k| !k.expose_secret().trim().is_empty())
            .ok_or(CloudConfigError::NoApiKey)?;
        let project_id = env
            .metal_project_id
            .or(env.packet_project_id)
            .or(env.vip_packetprojectid)
            .or(string_field(&fields, "projectID")?)
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .ok_or(CloudConfigError::NoProject)?;
        if !is_api_id(&project_id) {
            return Err(CloudConfigError::BadProject(project_id));
        }
        let base_url = match string_field(&fields, "base-url")?.filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(CloudConfigError::BadBaseUrl(url));
                }
                url
            }
            None => DEFAULT_BASE_URL.to_owned(),
        };
        Ok(CloudConfig {
            api_key: Arc::new(api_key),
            project_id,
            base_url,
        })
    }
}

/// An id that can go into a URL path as it is (the API's ids are UUIDs).
pub(crate) fn is_api_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A string field, its name matched case-insensitively as Go does.
fn string_field(
    fields: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, CloudConfigError> {
    match fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((_, Value::String(s))) => Ok(Some(s.clone())),
        Some(_) => Err(CloudConfigError::NotAString { field: name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: &str = "8d4e2a1c-0000-4000-8000-000000000000";

    fn env(pairs: &[(&str, &str)]) -> MetalEnv {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        MetalEnv::from_lookup(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_documented_file_is_read() {
        let file = r#"{"apiKey": "tok-file-123", "projectID": "8d4e2a1c-0000-4000-8000-000000000000",
 "loadbalancer": "kube-vip://", "metro": "sv", "eipTag": "", "localASN": 65000}"#;
        let c = CloudConfig::from_parts(Some(file), MetalEnv::default()).unwrap();
        assert_eq!(c.api_key.expose_secret(), "tok-file-123");
        assert_eq!(c.project_id, PID);
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn project_id_spellings_and_base_url_are_accepted() {
        for key in ["projectID", "projectId", "projectid", "ProjectID"] {
            let file = format!(
                r#"{{"apiKey":"t","{key}":"{PID}","base-url":"http://127.0.0.1:9/metal/v1/"}}"#
            );
            let c = CloudConfig::from_parts(Some(&file), MetalEnv::default()).unwrap();
            assert_eq!(c.project_id, PID, "{key}");
            assert_eq!(c.base_url, "http://127.0.0.1:9/metal/v1");
        }
        let c = CloudConfig::from_parts(
            Some(&format!(r#"{{"APIKEY":"t","projectId":"{PID}"}}"#)),
            MetalEnv::default(),
        )
        .unwrap();
        assert_eq!(c.api_key.expose_secret(), "t");
    }

    #[test]
    fn environment_overrides_the_file_in_order() {
        let file = format!(r#"{{"apiKey":"from-file","projectID":"{PID}"}}"#);
        let key = |e: MetalEnv| {
            CloudConfig::from_parts(Some(&file), e)
                .unwrap()
                .api_key
                .expose_secret()
                .to_owned()
        };
        assert_eq!(
            key(env(&[("METAL_API_KEY", "m"), ("PACKET_AUTH_TOKEN", "p")])),
            "m"
        );
        assert_eq!(
            key(env(&[("PACKET_AUTH_TOKEN", "p"), ("PACKET_API_KEY", "q")])),
            "p"
        );
        assert_eq!(key(env(&[("PACKET_API_KEY", "q")])), "q");
        assert_eq!(
            key(env(&[("METAL_API_KEY", "")])),
            "from-file",
            "empty = unset"
        );

        let project = |e: MetalEnv| CloudConfig::from_parts(Some(&file), e).unwrap().project_id;
        assert_eq!(
            project(env(&[
                ("METAL_PROJECT_ID", "aaaa-1"),
                ("PACKET_PROJECT_ID", "bbbb-2")
            ])),
            "aaaa-1"
        );
        assert_eq!(project(env(&[("PACKET_PROJECT_ID", "bbbb-2")])), "bbbb-2");
        assert_eq!(project(env(&[("vip_packetprojectid", "cccc-3")])), "cccc-3");
        assert_eq!(project(env(&[])), PID);
    }

    #[test]
    fn environment_alone_is_enough() {
        let c = CloudConfig::from_parts(
            None,
            env(&[("PACKET_AUTH_TOKEN", "t"), ("METAL_PROJECT_ID", PID)]),
        )
        .unwrap();
        assert_eq!(c.api_key.expose_secret(), "t");
    }

    #[test]
    fn missing_and_bad_fields_are_explained_without_the_key() {
        assert_eq!(
            CloudConfig::from_parts(
                Some(&format!(r#"{{"projectID":"{PID}"}}"#)),
                MetalEnv::default()
            )
            .unwrap_err(),
            CloudConfigError::NoApiKey
        );
        assert_eq!(
            CloudConfig::from_parts(Some(r#"{"apiKey":"sekrit-1"}"#), MetalEnv::default())
                .unwrap_err(),
            CloudConfigError::NoProject
        );
        let e = CloudConfig::from_parts(
            Some(r#"{"apiKey":"sekrit-1","projectID":"../x"}"#),
            MetalEnv::default(),
        )
        .unwrap_err();
        assert_eq!(e, CloudConfigError::BadProject("../x".into()));
        let e = CloudConfig::from_parts(
            Some(r#"{"apiKey":"sekrit-1","projectID":42}"#),
            MetalEnv::default(),
        )
        .unwrap_err();
        assert_eq!(e, CloudConfigError::NotAString { field: "projectID" });
        let e = CloudConfig::from_parts(
            Some(r#"{"apiKey":"sekrit-1","projectID":"p-1","base-url":"ftp://x"}"#),
            MetalEnv::default(),
        )
        .unwrap_err();
        assert!(matches!(e, CloudConfigError::BadBaseUrl(_)));
        let e =
            CloudConfig::from_parts(Some(r#"{"apiKey":"sekrit-1", oops}"#), MetalEnv::default())
                .unwrap_err();
        assert!(!e.to_string().contains("sekrit-1"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let e = env(&[("METAL_API_KEY", "sekrit-2"), ("METAL_PROJECT_ID", PID)]);
        assert!(!format!("{e:?}").contains("sekrit-2"));
        let c = CloudConfig::from_parts(None, e).unwrap();
        assert!(!format!("{c:?}").contains("sekrit-2"));
    }
}
