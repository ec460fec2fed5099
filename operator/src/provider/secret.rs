//! Probe credentials from a Secret in the CanaryPromotion's namespace. Errors name the Secret
//! and the key, never a value.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// Why a probe's Secret gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The Secret is missing, or lacks a key or a usable value: the spec names something to
    /// fix (ReferencesResolved=False).
    #[error("{0}")]
    Unusable(String),
    /// The API server could not say (a timeout, a 5xx): this round has no reading, nothing
    /// is wrong with the spec.
    #[error("{0}")]
    Unavailable(String),
}

pub struct SecretKeys {
    /// `namespace/name`, for messages.
    id: String,
    data: BTreeMap<String, ByteString>,
}

impl SecretKeys {
    pub async fn read(client: &Client, namespace: &str, name: &str) -> Result<SecretKeys, SecretError> {
        let id = format!("{namespace}/{name}");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|e| SecretError::Unavailable(format!("secret {id}: {e}")))?
            .ok_or_else(|| SecretError::Unusable(format!("secret {id} not found")))?;
        Ok(SecretKeys {
            id,
            data: secret.data.unwrap_or_default(),
        })
    }

    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.data.get(key).map(|v| v.0.clone())
    }

    /// The key's value as text, trimmed (a trailing newline from `kubectl create secret
    /// --from-file` is never part of a URL or a credential).
    pub fn text(&self, key: &str) -> Result<Option<String>, SecretError> {
        self.data
            .get(key)
            .map(|v| {
                std::str::from_utf8(&v.0)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| self.problem(&format!("key {key} is not UTF-8")))
            })
            .transpose()
    }

    pub fn required(&self, key: &str) -> Result<String, SecretError> {
        self.text(key)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.problem(&format!("has no key {key:?}")))
    }

    /// `secret <namespace>/<name>: <what>`.
    pub fn problem(&self, what: &str) -> SecretError {
        SecretError::Unusable(format!("secret {}: {what}", self.id))
    }
}
