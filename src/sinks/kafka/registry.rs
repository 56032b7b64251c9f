//! Registration of the topics' schemas with a Confluent-compatible schema registry, for the
//! `confluent` framing: `POST /subjects/<topic>-value/versions` returns the schema's id.

use std::time::Duration;

use serde::Deserialize;

const TIMEOUT: Duration = Duration::from_secs(15);
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry failure.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot register the schema of subject `{subject}` at the schema registry {url}: {message}"
)]
pub struct RegistryError {
    pub url: String,
    pub subject: String,
    pub message: String,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// Registers `schema` (the `.avsc` JSON text) under `subject` and returns its id. Registering
/// the same schema again returns the same id.
pub fn register(base_url: &str, subject: &str, schema: &str) -> Result<u32, RegistryError> {
    let url = format!(
        "{}/subjects/{subject}/versions",
        base_url.trim_end_matches('/')
    );
    let error = |message: String| RegistryError {
        url: base_url.to_owned(),
        subject: subject.to_owned(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
    let mut response = agent
        .post(&url)
        .header("Content-Type", CONTENT_TYPE)
        .header("Accept", CONTENT_TYPE)
        .send_json(&body)
        .map_err(|e| error(e.to_string()))?;
    let registered: Registered = response
        .body_mut()
        .read_json()
        .map_err(|e| error(format!("unexpected answer: {e}")))?;
    Ok(registered.id)
}
