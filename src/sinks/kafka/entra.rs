//! Microsoft Entra ID tokens for the Kafka endpoint of Event Hubs (SASL OAUTHBEARER), asked for
//! each time librdkafka wants one (at start, then before the previous one expires):
//!
//! - a **managed identity**: `GET <IMDS>?api-version=2018-02-01&resource=https://<namespace>`
//!   with `Metadata: true` (and the identity's `client_id` when it is user-assigned);
//! - an **AKS workload identity**: `POST <authority>/<tenant>/oauth2/v2.0/token` with the client
//!   credentials grant and the federated token file as the client assertion (read again each
//!   time: the kubelet rotates it);
//! - a **client secret**: the same request with the secret.
//!
//! The scope is `https://<namespace>/.default`. Neither the secret, the assertion nor the token
//! is ever in an error or a log line: an error says what was asked for and what Entra answered
//! (its `error` and `error_description`).

use std::time::Duration;

use serde::Deserialize;

use super::config::{EntraConnection, EntraSource};
use crate::clock::Clock;

const TIMEOUT: Duration = Duration::from_secs(20);
/// What the managed identity endpoint of Azure IMDS speaks.
const IMDS_API_VERSION: &str = "2018-02-01";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token and when it expires.
pub struct Token {
    /// The access token, for librdkafka only.
    pub value: String,
    /// Expiry, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// The principal the token stands for, as librdkafka names it in its logs.
    pub principal: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("principal", &self.principal)
            .finish()
    }
}

/// A token that could not be had.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot get a Microsoft Entra ID token for {host} ({credential}) from {endpoint}: {message}"
)]
pub struct TokenError {
    pub host: String,
    pub credential: &'static str,
    pub endpoint: String,
    pub message: String,
}

/// Where the tokens of one namespace come from.
pub struct TokenSource {
    connection: EntraConnection,
    agent: ureq::Agent,
}

/// What Entra and IMDS answer, success or error.
#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    /// Seconds (Entra: a number; IMDS: a string).
    expires_in: Option<serde_json::Value>,
    /// IMDS: the expiry, in seconds since the epoch, as a string.
    expires_on: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

fn seconds(value: &Option<serde_json::Value>) -> Option<i64> {
    match value.as_ref()? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl TokenSource {
    pub fn new(connection: EntraConnection) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self { connection, agent }
    }

    /// The credential's name, for messages.
    pub fn credential(&self) -> &'static str {
        match self.connection.credential {
            EntraSource::ManagedIdentity { .. } => "managed identity",
            EntraSource::WorkloadIdentity { .. } => "workload identity",
            EntraSource::ClientSecret { .. } => "client secret",
        }
    }

    /// Asks for a token now.
    pub fn fetch(&self) -> Result<Token, TokenError> {
        let now_ms = Clock::wall_now().as_millis();
        let (endpoint, principal, answer) = match &self.connection.credential {
            EntraSource::ManagedIdentity {
                client_id,
                endpoint,
            } => {
                let mut request = self
                    .agent
                    .get(endpoint.as_str())
                    .header("Metadata", "true")
                    .query("api-version", IMDS_API_VERSION)
                    .query("resource", self.connection.resource());
                if let Some(id) = client_id {
                    request = request.query("client_id", id);
                }
                let principal = client_id
                    .clone()
                    .unwrap_or_else(|| "managed-identity".into());
                (endpoint.clone(), principal, request.call())
            }
            EntraSource::WorkloadIdentity {
                client_id,
                tenant_id,
                token_file,
                authority,
            } => {
                let endpoint = token_endpoint(authority, tenant_id);
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    self.error(
                        &endpoint,
                        format!(
                            "cannot read the federated token file {}: {e}",
                            token_file.display()
                        ),
                    )
                })?;
                let scope = self.connection.scope();
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", scope.as_str()),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", assertion.trim()),
                ];
                let answer = self.agent.post(&endpoint).send_form(form);
                (endpoint, client_id.clone(), answer)
            }
            EntraSource::ClientSecret {
                client_id,
                tenant_id,
                secret,
                authority,
            } => {
                let endpoint = token_endpoint(authority, tenant_id);
                let scope = self.connection.scope();
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", scope.as_str()),
                    ("client_secret", secret.expose()),
                ];
                let answer = self.agent.post(&endpoint).send_form(form);
                (endpoint, client_id.clone(), answer)
            }
        };
        // A transport error names the failure, never the request (which holds the secret).
        let mut response = answer.map_err(|e| self.error(&endpoint, transport(&e)))?;
        let status = response.status().as_u16();
        let answer: Answer = response.body_mut().read_json().map_err(|e| {
            self.error(
                &endpoint,
                format!("HTTP {status}, with an answer that is not a token: {e}"),
            )
        })?;
        match answer.access_token.as_deref() {
            Some(token) if (200..300).contains(&status) && !token.is_empty() => {
                let expires_at_ms = seconds(&answer.expires_on)
                    .map(|at| at * 1000)
                    .or_else(|| seconds(&answer.expires_in).map(|s| now_ms + s * 1000))
                    .ok_or_else(|| self.error(&endpoint, "the token has no expiry".into()))?;
                Ok(Token {
                    value: token.to_owned(),
                    expires_at_ms,
                    principal,
                })
            }
            _ => {
                let code = answer.error.unwrap_or_else(|| "no error code".into());
                let description: String = answer
                    .error_description
                    .map(|d| {
                        d.lines()
                            .next()
                            .unwrap_or_default()
                            .chars()
                            .take(300)
                            .collect()
                    })
                    .unwrap_or_default();
                Err(self.error(&endpoint, format!("HTTP {status}: {code}: {description}")))
            }
        }
    }

    fn error(&self, endpoint: &str, message: String) -> TokenError {
        TokenError {
            host: self.connection.host.clone(),
            credential: self.credential(),
            endpoint: endpoint.to_owned(),
            message,
        }
    }
}

fn token_endpoint(authority: &str, tenant: &str) -> String {
    format!(
        "{}/{tenant}/oauth2/v2.0/token",
        authority.trim_end_matches('/')
    )
}

/// A transport failure in words, without the request.
fn transport(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Io(e) => format!("cannot reach it: {e}"),
        ureq::Error::Timeout(_) => format!("no answer within {} s", TIMEOUT.as_secs()),
        ureq::Error::HostNotFound => "its host name does not resolve".into(),
        ureq::Error::ConnectionFailed => "the connection failed".into(),
        other => format!(
            "the request failed: {}",
            other.to_string().lines().next().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::sync::mpsc;

    use super::*;
    use crate::sinks::kafka::Secret;

    /// One request as a loopback stand-in of Entra or IMDS received it.
    struct Received {
        request_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    /// Serves `answers` (status, JSON body) in order, one per connection; returns its base
    /// URL and what it received.
    fn stand_in(answers: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sent, received) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                }
                let length = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut content = vec![0; length];
                reader.read_exact(&mut content).unwrap();
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                sent.send(Received {
                    request_line: request_line.trim_end().to_owned(),
                    headers,
                    body: String::from_utf8(content).unwrap(),
                })
                .unwrap();
            }
        });
        (url, received)
    }

    fn form(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                let decode = |s: &str| {
                    let s = s.replace('+', " ");
                    let mut out = Vec::new();
                    let bytes = s.as_bytes();
                    let mut i = 0;
                    while i < bytes.len() {
                        if bytes[i] == b'%' {
                            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        } else {
                            out.push(bytes[i]);
                            i += 1;
                        }
                    }
                    String::from_utf8(out).unwrap()
                };
                (decode(k), decode(v))
            })
            .collect()
    }

    fn source(credential: EntraSource) -> TokenSource {
        TokenSource::new(EntraConnection {
            host: "shop-events.servicebus.windows.net".into(),
            credential,
        })
    }

    #[test]
    fn a_managed_identity_asks_imds_for_the_namespace() {
        let (url, received) = stand_in(vec![(
            200,
            r#"{"access_token":"imds-token","expires_on":"1900000000","expires_in":"86399","token_type":"Bearer"}"#,
        )]);
        let tokens = source(EntraSource::ManagedIdentity {
            client_id: Some("user-assigned-1".into()),
            endpoint: format!("{url}/metadata/identity/oauth2/token"),
        });
        let token = tokens.fetch().unwrap();
        assert_eq!(token.value, "imds-token");
        assert_eq!(token.expires_at_ms, 1_900_000_000_000);
        assert_eq!(token.principal, "user-assigned-1");
        let request = received.recv().unwrap();
        assert_eq!(
            request.request_line,
            "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fshop-events.servicebus.windows.net&client_id=user-assigned-1 HTTP/1.1"
        );
        assert!(
            request
                .headers
                .contains(&("metadata".into(), "true".into()))
        );
        assert!(!format!("{token:?}").contains("imds-token"));
    }

    #[test]
    fn a_workload_identity_sends_its_federated_token_read_afresh_each_time() {
        let (url, received) = stand_in(vec![
            (
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"entra-token-1"}"#,
            ),
            (
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"entra-token-2"}"#,
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join("azure-identity-token");
        std::fs::write(&file, "federated-1\n").unwrap();
        let tokens = source(EntraSource::WorkloadIdentity {
            client_id: "app-1".into(),
            tenant_id: "tenant-1".into(),
            token_file: file.clone(),
            authority: url.clone(),
        });
        let before = Clock::wall_now().as_millis();
        let first = tokens.fetch().unwrap();
        assert_eq!(first.value, "entra-token-1");
        assert!((first.expires_at_ms - before - 3_599_000).abs() < 60_000);
        std::fs::write(&file, "federated-2").unwrap(); // the kubelet rotated it
        assert_eq!(tokens.fetch().unwrap().value, "entra-token-2");
        for expected in ["federated-1", "federated-2"] {
            let request = received.recv().unwrap();
            assert_eq!(
                request.request_line,
                "POST /tenant-1/oauth2/v2.0/token HTTP/1.1"
            );
            let form = form(&request.body);
            let field = |name: &str| {
                form.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(field("grant_type"), Some("client_credentials"));
            assert_eq!(field("client_id"), Some("app-1"));
            assert_eq!(
                field("scope"),
                Some("https://shop-events.servicebus.windows.net/.default")
            );
            assert_eq!(field("client_assertion_type"), Some(ASSERTION_TYPE));
            assert_eq!(field("client_assertion"), Some(expected));
        }
    }

    #[test]
    fn a_refusal_is_reported_in_entras_words_without_the_secret() {
        let (url, received) = stand_in(vec![(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0000"}"#,
        )]);
        let tokens = source(EntraSource::ClientSecret {
            client_id: "app-1".into(),
            tenant_id: "tenant-1".into(),
            secret: Secret::new("very-secret-value"),
            authority: url.clone(),
        });
        let error = tokens.fetch().unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "cannot get a Microsoft Entra ID token for shop-events.servicebus.windows.net (client secret) \
                 from {url}/tenant-1/oauth2/v2.0/token: HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided."
            )
        );
        let request = received.recv().unwrap();
        assert!(request.body.contains("client_secret=very-secret-value"));
        // Nothing listens here: the error names the failure, not the request.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let tokens = source(EntraSource::ClientSecret {
            client_id: "app-1".into(),
            tenant_id: "tenant-1".into(),
            secret: Secret::new("very-secret-value"),
            authority: gone,
        });
        let error = tokens.fetch().unwrap_err().to_string();
        assert!(!error.contains("very-secret-value"), "{error}");
        assert!(
            error.contains("cannot reach it") || error.contains("connection failed"),
            "{error}"
        );
    }
}
