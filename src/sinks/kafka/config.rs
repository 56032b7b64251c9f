//! Kafka and Event Hubs connection settings, and the librdkafka properties derived from them.
//!
//! Given an Event Hubs namespace connection string, everything else is derived: the bootstrap
//! server `<namespace>.servicebus.windows.net:9093`, SASL_SSL with PLAIN, user
//! `$ConnectionString`, and Microsoft's recommended producer settings. The connection string is
//! a [`Secret`]: it is never printed, logged or put in an error.
//!
//! With `kafka.auth = "entra"` and `kafka.namespace`, the producer authenticates with Microsoft
//! Entra ID instead (SASL_SSL with OAUTHBEARER, tokens for the namespace's
//! `https://<namespace>/.default` scope): through a managed identity, an AKS workload identity
//! (its federated token file) or a client secret ([`EntraCredential`]; `super::entra` fetches
//! the tokens). Nothing secret is in the producer's properties then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ::config::ValueKind;

use crate::model::{PerTopic, Topic};
use crate::settings::{
    Describe, Invalid, Parser, Printed, SecretText, Text, boolean, duration, one_of, optional,
    quoted, text_of,
};
pub use crate::settings::{Secret, SecretFile};

crate::named! {
    /// How the producer proves who it is, when not inferred.
    pub enum KafkaAuth {
        /// An Event Hubs namespace connection string (shared access key).
        ConnectionString = "connection_string",
        /// Microsoft Entra ID: OAUTHBEARER tokens for the namespace.
        Entra = "entra",
    }
}

crate::named! {
    /// Which Entra ID credential the producer's tokens come from.
    pub enum EntraCredential {
        /// A client secret if one is given, else the workload identity if its token file is
        /// (AZURE_FEDERATED_TOKEN_FILE), else the managed identity.
        Auto = "auto",
        /// The managed identity of the VM or node (Azure IMDS).
        ManagedIdentity = "managed_identity",
        /// An AKS workload identity: a federated token file exchanged for a token.
        WorkloadIdentity = "workload_identity",
        /// An application's client secret.
        ClientSecret = "client_secret",
    }
}

crate::named! {
    /// How message values are framed.
    pub enum Framing {
        /// The plain Avro binary datum, as Spark's `from_avro(value, schema)` reads it.
        Raw = "raw",
        /// Magic byte 0, the 4-byte big-endian schema id, then the datum (Confluent wire
        /// format).
        Confluent = "confluent",
    }
}

/// A list of `host:port` separated by commas, each with a host and a port from 1 to 65535
/// (an IPv6 host in brackets: `[::1]:9092`).
fn bootstrap() -> Text<String> {
    Text::new(
        "HOST:PORT",
        "host:port[,host:port...], ports from 1 to 65535",
        |s| {
            let s = s.trim();
            if s.is_empty() {
                return Err("an empty list: expected host:port[,host:port...]".to_owned());
            }
            for server in s.split(',').map(str::trim) {
                check_server(server)?;
            }
            Ok(s.to_owned())
        },
        |s| quoted(s),
    )
}

/// Checks one `host:port`.
fn check_server(server: &str) -> Result<(), String> {
    let expected = "expected host:port with a port from 1 to 65535, like localhost:9092";
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(format!("`{server}` has no port: {expected}"));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{server}` has no host: {expected}"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!(
            "`{server}` has no valid port (`{port}`): {expected}"
        )),
    }
}

/// An Event Hubs connection string: printed back as the namespace it names, never as itself.
const CONNECTION_STRING: SecretText = SecretText {
    allowed: "an Event Hubs namespace connection string",
    describe: |secret| match EventHubsConnection::parse(secret) {
        Ok(connection) => format!("set (redacted): Event Hubs namespace {}", connection.host),
        Err(_) => "set (redacted)".to_owned(),
    },
};

/// An Entra client secret: printed back as `set (redacted)`.
const CLIENT_SECRET: SecretText = SecretText {
    allowed: "a secret",
    describe: |_| "set (redacted)".to_owned(),
};

fn secret_file() -> Text<SecretFile> {
    crate::settings::secret_file("an Event Hubs connection string")
}

/// A topic name: 1 to 249 letters, digits, `.`, `_` or `-`.
fn topic_name(s: &str) -> Result<String, String> {
    if crate::settings::is_topic_name(s, 249) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a topic name: 1 to 249 letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// `[kafka.topics]`: the topic (event hub) of each kind of event.
struct TopicNames;

impl Describe for TopicNames {
    fn value_name(&self) -> &'static str {
        "TABLE"
    }
    fn allowed(&self) -> String {
        format!("a table naming the topic of each of {}", Topic::names())
    }
    fn is_table(&self) -> bool {
        true
    }
}

impl Parser for TopicNames {
    type Value = PerTopic<String>;

    fn parse(&self, value: &::config::Value) -> Result<PerTopic<String>, Invalid> {
        let ValueKind::Table(table) = &value.kind else {
            return Err(vec![(
                String::new(),
                "expected a table of topic names".into(),
            )]);
        };
        let mut problems = Invalid::new();
        for key in table.keys().filter(|k| k.parse::<Topic>().is_err()) {
            problems.push((format!(".{key}"), "unknown setting".into()));
        }
        let names = Topic::ALL.map(|topic| {
            let field = format!(".{topic}");
            let result = match table.get(topic.as_str()) {
                None => Err("missing".to_owned()),
                Some(v) => text_of(v)
                    .map_err(|e| e.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "))
                    .and_then(|t| topic_name(&t)),
            };
            result
                .map_err(|message| problems.push((field, message)))
                .unwrap_or_default()
        });
        if problems.is_empty() {
            Ok(names)
        } else {
            Err(problems)
        }
    }

    fn print(&self, names: &PerTopic<String>) -> Printed {
        let fields: Vec<String> = Topic::ALL
            .iter()
            .map(|t| format!("{t} = {}", quoted(&names[t.index()])))
            .collect();
        Printed::Value(format!("{{ {} }}", fields.join(", ")))
    }
}

/// `[kafka.properties]`: librdkafka properties, passed through.
struct Properties;

impl Describe for Properties {
    fn value_name(&self) -> &'static str {
        "TABLE"
    }
    fn allowed(&self) -> String {
        "a table of librdkafka producer properties, `\"name\" = \"value\"`".to_owned()
    }
    fn is_table(&self) -> bool {
        true
    }
}

impl Parser for Properties {
    type Value = Vec<(String, String)>;

    fn absent(&self) -> Option<Self::Value> {
        Some(Vec::new())
    }

    fn parse(&self, value: &::config::Value) -> Result<Vec<(String, String)>, Invalid> {
        value
            .clone()
            .try_deserialize::<BTreeMap<String, String>>()
            .map(|table| table.into_iter().collect())
            .map_err(|e| {
                vec![(
                    String::new(),
                    format!("expected a table of `\"name\" = \"value\"`: {e}"),
                )]
            })
    }

    fn print(&self, properties: &Vec<(String, String)>) -> Printed {
        let fields: Vec<String> = properties
            .iter()
            .map(|(k, v)| format!("{} = {}", quoted(k), quoted(v)))
            .collect();
        Printed::Value(format!("{{ {} }}", fields.join(", ")))
    }
}

/// An Event Hubs namespace: its name, or its host name (`<name>.servicebus.windows.net`, or a
/// sovereign cloud's).
fn namespace() -> Text<String> {
    Text::new(
        "NAMESPACE",
        "an Event Hubs namespace: <name> or <name>.servicebus.windows.net",
        |s| {
            let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
            let valid = !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(format!(
                    "`{s}` is not an Event Hubs namespace: <name> or <name>.servicebus.windows.net"
                ));
            }
            Ok(if s.contains('.') {
                s
            } else {
                format!("{s}.servicebus.windows.net")
            })
        },
        |s| quoted(s),
    )
}

/// An Entra ID identifier (a GUID, or a tenant's domain): one word.
fn identifier(what: &'static str) -> Text<String> {
    Text::new(
        "ID",
        what,
        move |s| {
            let s = s.trim();
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                Err(format!("`{s}` is not {what}"))
            } else {
                Ok(s.to_owned())
            }
        },
        |s| quoted(s),
    )
}

/// A path, as given.
fn path() -> Text<PathBuf> {
    Text::new(
        "PATH",
        "a file path",
        |s| {
            let s = s.trim();
            if s.is_empty() {
                Err("an empty path".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        },
        |p| quoted(&p.display().to_string()),
    )
}

/// An http:// or https:// URL, without its trailing `/`.
fn url() -> Text<String> {
    Text::new(
        "URL",
        "an http:// or https:// URL",
        |s| {
            let s = s.trim();
            if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len()
            {
                Ok(s.trim_end_matches('/').to_owned())
            } else {
                Err(format!("`{s}` is not an http:// or https:// URL"))
            }
        },
        |s| quoted(s),
    )
}

crate::section! {
    /// Kafka or Azure Event Hubs, for `--sink kafka`.
    pub struct KafkaConfig in "kafka" {
        /// Kafka bootstrap servers, host:port[,host:port...] (for --sink kafka).
        pub bootstrap_servers: Option<String> = optional(bootstrap()),
            flag = "--bootstrap-servers";
        /// An Event Hubs namespace connection string (best given in the environment); never
        /// logged or printed.
        pub connection_string: Option<Secret> = optional(CONNECTION_STRING);
        /// A file holding the Event Hubs connection string (a mounted secret).
        pub connection_string_file: Option<SecretFile> = optional(secret_file());
        /// How the producer authenticates: connection_string or entra (Microsoft Entra ID,
        /// with kafka.namespace); unset, a connection string is used if given, else none.
        pub auth: Option<KafkaAuth> = optional(one_of("AUTH", "an authentication", KafkaAuth::names()));
        /// The Event Hubs namespace, for kafka.auth = "entra": <name> or its host name.
        pub namespace: Option<String> = optional(namespace());
        /// The Entra ID credential: auto, managed_identity, workload_identity or client_secret.
        pub entra_credential: EntraCredential = one_of("CREDENTIAL", "a credential", EntraCredential::names());
        /// The application (client) id; else AZURE_CLIENT_ID. A managed identity without it is
        /// the system-assigned one.
        pub entra_client_id: Option<String> = optional(identifier("an application (client) id"));
        /// The directory (tenant) id; else AZURE_TENANT_ID (not used by a managed identity).
        pub entra_tenant_id: Option<String> = optional(identifier("a directory (tenant) id"));
        /// The client secret (best given in the environment); else AZURE_CLIENT_SECRET. Never
        /// logged or printed.
        pub entra_client_secret: Option<Secret> = optional(CLIENT_SECRET);
        /// The federated token file of a workload identity; else AZURE_FEDERATED_TOKEN_FILE.
        pub entra_token_file: Option<PathBuf> = optional(path());
        /// Where tokens are asked for: the Entra authority (else AZURE_AUTHORITY_HOST, then
        /// https://login.microsoftonline.com), or the managed identity endpoint (Azure IMDS).
        pub entra_endpoint: Option<String> = optional(url());
        /// Message values: raw (the plain Avro datum) or confluent (magic byte, schema id,
        /// datum; needs schema_registry.url).
        pub framing: Framing = one_of("FRAMING", "a framing", Framing::names());
        /// Idempotent producer (acks=all either way).
        pub idempotence: bool = boolean();
        /// How long delivery of a message is retried before it counts as not delivered.
        pub delivery_timeout: Duration = duration(Duration::ZERO);
        /// How long shutdown waits for outstanding deliveries.
        pub flush_timeout: Duration = duration(Duration::ZERO);
        /// Topic (event hub) of each kind of event.
        pub topics: PerTopic<String> = TopicNames;
        /// Any librdkafka producer property, applied last.
        pub properties: Vec<(String, String)> = Properties;
    }
}

crate::section! {
    /// A Confluent-compatible schema registry.
    pub struct SchemaRegistryConfig in "schema_registry" {
        /// Base URL of the registry, for kafka.framing = "confluent".
        pub url: Option<String> = optional(url());
    }
}

/// Validated Kafka settings: the `[kafka]` section, where it connects, and the schema
/// registry it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// Where to connect: a plain bootstrap list or an Event Hubs namespace.
    pub target: KafkaTarget,
    pub config: KafkaConfig,
    /// Base URL of a Confluent-compatible schema registry (required for `confluent` framing).
    pub schema_registry_url: Option<String>,
}

impl KafkaConfig {
    /// Where to connect and which registry to use; `Err` names each setting at fault. The
    /// secret never appears in a message.
    pub fn resolve(
        &self,
        registry: &SchemaRegistryConfig,
    ) -> Result<KafkaSettings, Vec<(&'static str, String)>> {
        self.resolve_in(registry, &|name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// [`Self::resolve`], reading the `AZURE_*` environment variables (which the AKS workload
    /// identity webhook sets) through `env`.
    pub fn resolve_in(
        &self,
        registry: &SchemaRegistryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KafkaSettings, Vec<(&'static str, String)>> {
        if self.namespace.is_some() && self.auth != Some(KafkaAuth::Entra) {
            return Err(vec![(
                "kafka.namespace",
                "used only with kafka.auth = \"entra\" (a connection string names its namespace)"
                    .into(),
            )]);
        }
        if self.auth == Some(KafkaAuth::Entra) {
            return self.resolve_entra(registry, env);
        }
        let connection_string = match (&self.connection_string, &self.connection_string_file) {
            (Some(_), Some(_)) => {
                return Err(vec![(
                    "kafka.connection_string",
                    "set either the connection string or kafka.connection_string_file, not both"
                        .into(),
                )]);
            }
            (inline, file) => inline.clone().or(file.as_ref().map(|f| f.secret.clone())),
        };
        let target = match (connection_string, &self.bootstrap_servers) {
            (Some(_), Some(_)) => {
                return Err(vec![(
                    "kafka.bootstrap_servers",
                    "not used with an Event Hubs connection string, which gives the bootstrap \
                     server: set one or the other"
                        .into(),
                )]);
            }
            (Some(secret), None) => match EventHubsConnection::parse(&secret) {
                Ok(connection) => KafkaTarget::EventHubs(connection),
                Err(message) => {
                    return Err(vec![(
                        "kafka.connection_string",
                        format!("the connection string {message}"),
                    )]);
                }
            },
            (None, Some(_)) if self.auth == Some(KafkaAuth::ConnectionString) => {
                return Err(vec![(
                    "kafka.connection_string",
                    "missing: kafka.auth = \"connection_string\" needs it, in \
                     SIMULATOR__KAFKA__CONNECTION_STRING or a file named by \
                     kafka.connection_string_file"
                        .into(),
                )]);
            }
            (None, Some(servers)) => KafkaTarget::Bootstrap(servers.clone()),
            (None, None) => {
                return Err(vec![(
                    "kafka.bootstrap_servers",
                    "missing: the kafka sink needs kafka.bootstrap_servers, or an Event Hubs \
                     connection string in SIMULATOR__KAFKA__CONNECTION_STRING or a file named by \
                     kafka.connection_string_file"
                        .into(),
                )]);
            }
        };
        self.settings(target, registry)
    }

    fn settings(
        &self,
        target: KafkaTarget,
        registry: &SchemaRegistryConfig,
    ) -> Result<KafkaSettings, Vec<(&'static str, String)>> {
        if self.framing == Framing::Confluent && registry.url.is_none() {
            return Err(vec![(
                "schema_registry.url",
                "missing: the confluent framing needs a schema registry".into(),
            )]);
        }
        Ok(KafkaSettings {
            target,
            config: self.clone(),
            schema_registry_url: registry.url.clone(),
        })
    }

    /// `kafka.auth = "entra"`: the namespace and the credential its tokens come from.
    fn resolve_entra(
        &self,
        registry: &SchemaRegistryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KafkaSettings, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        if self.connection_string.is_some() || self.connection_string_file.is_some() {
            problems.push((
                "kafka.connection_string",
                "not used with kafka.auth = \"entra\", which has no shared key: unset it".into(),
            ));
        }
        if self.bootstrap_servers.is_some() {
            problems.push((
                "kafka.bootstrap_servers",
                "not used with kafka.auth = \"entra\": the namespace gives the bootstrap server"
                    .into(),
            ));
        }
        let Some(host) = self.namespace.clone() else {
            problems.push((
                "kafka.namespace",
                "missing: kafka.auth = \"entra\" needs the Event Hubs namespace".into(),
            ));
            return Err(problems);
        };
        let client_id = self
            .entra_client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"));
        let tenant_id = self
            .entra_tenant_id
            .clone()
            .or_else(|| env("AZURE_TENANT_ID"));
        let secret = self
            .entra_client_secret
            .clone()
            .or_else(|| env("AZURE_CLIENT_SECRET").map(Secret::new));
        let token_file = self
            .entra_token_file
            .clone()
            .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from));
        let authority = self
            .entra_endpoint
            .clone()
            .or_else(|| env("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| ENTRA_AUTHORITY.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let kind = match self.entra_credential {
            EntraCredential::Auto if secret.is_some() => EntraCredential::ClientSecret,
            EntraCredential::Auto if token_file.is_some() => EntraCredential::WorkloadIdentity,
            EntraCredential::Auto => EntraCredential::ManagedIdentity,
            kind => kind,
        };
        let mut required =
            |value: Option<String>, key: &'static str, what: &str, variable: &str| {
                value.unwrap_or_else(|| {
                    problems.push((
                        key,
                        format!("missing: a {kind} credential needs {what} ({key}, or {variable})"),
                    ));
                    String::new()
                })
            };
        let credential = match kind {
            EntraCredential::ManagedIdentity | EntraCredential::Auto => {
                EntraSource::ManagedIdentity {
                    client_id,
                    endpoint: self
                        .entra_endpoint
                        .clone()
                        .unwrap_or_else(|| MANAGED_IDENTITY_ENDPOINT.to_owned()),
                }
            }
            EntraCredential::WorkloadIdentity => {
                let client_id = required(
                    client_id,
                    "kafka.entra_client_id",
                    "the application id",
                    "AZURE_CLIENT_ID",
                );
                let tenant_id = required(
                    tenant_id,
                    "kafka.entra_tenant_id",
                    "the tenant id",
                    "AZURE_TENANT_ID",
                );
                match token_file {
                    Some(file) => {
                        if let Err(e) = std::fs::metadata(&file) {
                            problems.push((
                                "kafka.entra_token_file",
                                format!(
                                    "cannot read the federated token file `{}`: {e}",
                                    file.display()
                                ),
                            ));
                        }
                        EntraSource::WorkloadIdentity {
                            client_id,
                            tenant_id,
                            token_file: file,
                            authority,
                        }
                    }
                    None => {
                        problems.push((
                            "kafka.entra_token_file",
                            "missing: a workload_identity credential needs the federated token file \
                             (kafka.entra_token_file, or AZURE_FEDERATED_TOKEN_FILE, which the \
                             workload identity webhook sets)"
                                .into(),
                        ));
                        return Err(problems);
                    }
                }
            }
            EntraCredential::ClientSecret => {
                let client_id = required(
                    client_id,
                    "kafka.entra_client_id",
                    "the application id",
                    "AZURE_CLIENT_ID",
                );
                let tenant_id = required(
                    tenant_id,
                    "kafka.entra_tenant_id",
                    "the tenant id",
                    "AZURE_TENANT_ID",
                );
                match secret {
                    Some(secret) => EntraSource::ClientSecret {
                        client_id,
                        tenant_id,
                        secret,
                        authority,
                    },
                    None => {
                        problems.push((
                            "kafka.entra_client_secret",
                            "missing: a client_secret credential needs it, in \
                             SIMULATOR__KAFKA__ENTRA_CLIENT_SECRET or AZURE_CLIENT_SECRET"
                                .into(),
                        ));
                        return Err(problems);
                    }
                }
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        self.settings(
            KafkaTarget::Entra(EntraConnection { host, credential }),
            registry,
        )
    }
}

/// Microsoft Entra ID's public-cloud authority.
pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The managed identity endpoint of Azure IMDS.
pub const MANAGED_IDENTITY_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Where the producer connects.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaTarget {
    /// Any Kafka-compatible cluster.
    Bootstrap(String),
    /// An Event Hubs namespace through its Kafka endpoint.
    EventHubs(EventHubsConnection),
    /// An Event Hubs namespace through its Kafka endpoint, with Entra ID tokens.
    Entra(EntraConnection),
}

/// An Event Hubs namespace reached with Microsoft Entra ID.
#[derive(Debug, Clone, PartialEq)]
pub struct EntraConnection {
    /// `<namespace>.servicebus.windows.net`.
    pub host: String,
    pub credential: EntraSource,
}

impl EntraConnection {
    /// The scope of the tokens the Kafka endpoint takes.
    pub fn scope(&self) -> String {
        format!("https://{}/.default", self.host)
    }

    /// The same, as the resource a managed identity asks a token for.
    pub fn resource(&self) -> String {
        format!("https://{}", self.host)
    }
}

/// Where an Entra ID token comes from, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum EntraSource {
    ManagedIdentity {
        /// A user-assigned identity's client id; none for the system-assigned one.
        client_id: Option<String>,
        endpoint: String,
    },
    WorkloadIdentity {
        client_id: String,
        tenant_id: String,
        token_file: PathBuf,
        authority: String,
    },
    ClientSecret {
        client_id: String,
        tenant_id: String,
        secret: Secret,
        authority: String,
    },
}

impl KafkaTarget {
    /// The bootstrap servers, which are not secret.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            KafkaTarget::Bootstrap(servers) => servers.clone(),
            KafkaTarget::EventHubs(c) => c.bootstrap_server(),
            KafkaTarget::Entra(c) => format!("{}:9093", c.host),
        }
    }
}

/// A parsed Event Hubs namespace connection string.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHubsConnection {
    /// `<namespace>.servicebus.windows.net`.
    pub host: String,
    /// The event hub the string is scoped to, if any (`EntityPath`).
    pub entity_path: Option<String>,
    /// The whole connection string: the SASL password.
    pub connection_string: Secret,
}

impl EventHubsConnection {
    /// Parses `Endpoint=sb://<host>/;SharedAccessKeyName=<name>;SharedAccessKey=<key>[;EntityPath=<hub>]`
    /// (or with `SharedAccessSignature`). Errors describe what is wrong without the value.
    pub fn parse(secret: &Secret) -> Result<Self, String> {
        let text = secret.expose().trim();
        let mut endpoint = None;
        let (mut key_name, mut key, mut signature, mut entity_path) = (false, false, false, None);
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("is not an Event Hubs connection string: expected `Name=value` pairs separated by `;`".into());
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().to_owned()),
                "sharedaccesskeyname" => key_name = !value.trim().is_empty(),
                "sharedaccesskey" => key = !value.trim().is_empty(),
                "sharedaccesssignature" => signature = !value.trim().is_empty(),
                "entitypath" => entity_path = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or("is not an Event Hubs connection string: it has no `Endpoint=sb://<namespace>.servicebus.windows.net/`")?;
        let host = endpoint
            .strip_prefix("sb://")
            .ok_or("has an `Endpoint` that does not start with `sb://`")?
            .trim_end_matches('/');
        let valid_host = !host.is_empty()
            && host.contains('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid_host {
            return Err("has an `Endpoint` whose host is not a namespace host name like <namespace>.servicebus.windows.net".into());
        }
        if !(signature || (key_name && key)) {
            return Err("has no credentials: it needs `SharedAccessKeyName` and `SharedAccessKey` (or `SharedAccessSignature`)".into());
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            entity_path,
            connection_string: secret.clone(),
        })
    }

    /// The Kafka endpoint of the namespace.
    pub fn bootstrap_server(&self) -> String {
        format!("{}:9093", self.host)
    }
}

/// A librdkafka property whose value may be secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub key: String,
    pub value: PropertyValue,
}

/// A property value, plain or secret.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    Plain(String),
    Secret(Secret),
}

impl PropertyValue {
    /// The value for librdkafka.
    pub fn expose(&self) -> &str {
        match self {
            PropertyValue::Plain(v) => v,
            PropertyValue::Secret(s) => s.expose(),
        }
    }

    /// The value for logs.
    pub fn redacted(&self) -> &str {
        match self {
            PropertyValue::Plain(v) => v,
            PropertyValue::Secret(_) => "<redacted>",
        }
    }
}

/// The producer's `queue.buffering.max.messages`.
const QUEUED_MESSAGES: &str = "20000";

impl KafkaSettings {
    /// The producer's librdkafka properties, in the order they are applied (later wins).
    pub fn producer_properties(&self) -> Vec<Property> {
        let plain = |key: &str, value: &str| Property {
            key: key.to_owned(),
            value: PropertyValue::Plain(value.to_owned()),
        };
        let mut properties = vec![plain("bootstrap.servers", &self.target.bootstrap_servers())];
        match &self.target {
            KafkaTarget::Bootstrap(_) => {}
            KafkaTarget::EventHubs(connection) => properties.extend([
                plain("security.protocol", "SASL_SSL"),
                plain("sasl.mechanism", "PLAIN"),
                plain("sasl.username", "$ConnectionString"),
                Property {
                    key: "sasl.password".into(),
                    value: PropertyValue::Secret(connection.connection_string.clone()),
                },
            ]),
            // The tokens come from the sink's OAUTHBEARER callback (super::entra), not from a
            // property.
            KafkaTarget::Entra(_) => properties.extend([
                plain("security.protocol", "SASL_SSL"),
                plain("sasl.mechanism", "OAUTHBEARER"),
            ]),
        }
        if !matches!(self.target, KafkaTarget::Bootstrap(_)) {
            // Microsoft's recommendations for producers on the Kafka endpoint. librdkafka
            // sets connections.max.idle.ms itself only for hosts containing "azure".
            properties.extend([
                plain("socket.keepalive.enable", "true"),
                plain("metadata.max.age.ms", "180000"),
                plain("connections.max.idle.ms", "180000"),
                plain("request.timeout.ms", "60000"),
            ]);
        }
        let timeout_ms = self.config.delivery_timeout.as_millis().to_string();
        properties.extend([
            plain(
                "enable.idempotence",
                if self.config.idempotence {
                    "true"
                } else {
                    "false"
                },
            ),
            plain("acks", "all"),
            plain("message.timeout.ms", &timeout_ms),
            plain("compression.type", "none"),
            // A produce request stays under Event Hubs' 1 MB publication limit.
            plain("message.max.bytes", "1000000"),
            // Java clients' partitioner, so other producers agree on a key's partition.
            plain("partitioner", "murmur2_random"),
            // Queue depth, round-trip and throttle times for the metrics.
            plain("statistics.interval.ms", "5000"),
            // Messages waiting or in flight, at most (librdkafka's default: 100,000, each a
            // copy of the value with its key and four headers). From a queue that deep, which
            // outgrows the CPU's caches, librdkafka's threads spent up to half as much CPU again
            // per message (`perf record` of runs into tansu, README's Performance); 20,000
            // still keep 400,000 messages a second in flight over a 50 ms round trip.
            plain("queue.buffering.max.messages", QUEUED_MESSAGES),
        ]);
        properties.extend(self.config.properties.iter().map(|(k, v)| plain(k, v)));
        properties
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS12YWx1ZQ==";

    fn connection_string() -> String {
        format!(
            "Endpoint=sb://shop-events.servicebus.windows.net/;SharedAccessKeyName=Sender;SharedAccessKey={KEY}"
        )
    }

    fn settings(target: KafkaTarget) -> KafkaSettings {
        KafkaSettings {
            target,
            config: KafkaConfig {
                bootstrap_servers: None,
                connection_string: None,
                connection_string_file: None,
                auth: None,
                namespace: None,
                entra_credential: EntraCredential::Auto,
                entra_client_id: None,
                entra_tenant_id: None,
                entra_client_secret: None,
                entra_token_file: None,
                entra_endpoint: None,
                topics: Topic::ALL.map(|t| t.as_str().to_owned()),
                framing: Framing::Raw,
                idempotence: true,
                delivery_timeout: Duration::from_secs(300),
                flush_timeout: Duration::from_secs(30),
                properties: vec![("linger.ms".into(), "20".into())],
            },
            schema_registry_url: None,
        }
    }

    #[test]
    fn event_hubs_connection_string_yields_exactly_the_recommended_settings() {
        let secret = Secret::new(connection_string());
        let connection = EventHubsConnection::parse(&secret).unwrap();
        let properties = settings(KafkaTarget::EventHubs(connection)).producer_properties();
        let shown: Vec<(&str, &str)> = properties
            .iter()
            .map(|p| (p.key.as_str(), p.value.redacted()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    "bootstrap.servers",
                    "shop-events.servicebus.windows.net:9093"
                ),
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "$ConnectionString"),
                ("sasl.password", "<redacted>"),
                ("socket.keepalive.enable", "true"),
                ("metadata.max.age.ms", "180000"),
                ("connections.max.idle.ms", "180000"),
                ("request.timeout.ms", "60000"),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", "300000"),
                ("compression.type", "none"),
                ("message.max.bytes", "1000000"),
                ("partitioner", "murmur2_random"),
                ("statistics.interval.ms", "5000"),
                ("queue.buffering.max.messages", "20000"),
                ("linger.ms", "20"),
            ]
        );
        let password = properties
            .iter()
            .find(|p| p.key == "sasl.password")
            .unwrap();
        assert_eq!(password.value.expose(), connection_string());
        assert!(
            !format!("{properties:?}").contains(KEY),
            "the secret leaked into Debug"
        );
    }

    #[test]
    fn bootstrap_servers_need_a_host_and_a_port_in_range() {
        let parser = bootstrap();
        let parse = |s: &str| {
            crate::settings::Parser::parse(&parser, &::config::Value::from(s))
                .map_err(|e| e[0].1.clone())
        };
        for good in [
            "localhost:9092",
            "a:1,b:65535",
            "[::1]:9092",
            " x.example:9093 ",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for (bad, needle) in [
            ("127.0.0.1:99999", "no valid port (`99999`)"),
            ("host:notaport", "no valid port (`notaport`)"),
            ("host:", "no valid port (``)"),
            (":9092", "`:9092` has no host"),
            ("host:0", "no valid port (`0`)"),
            ("a:1,nohost", "`nohost` has no port"),
            ("", "an empty list"),
        ] {
            let message = parse(bad).unwrap_err();
            assert!(message.contains(needle), "{bad}: {message}");
        }
    }

    #[test]
    fn plain_kafka_has_no_security_settings() {
        let properties =
            settings(KafkaTarget::Bootstrap("127.0.0.1:9092".into())).producer_properties();
        assert_eq!(properties[0].value.expose(), "127.0.0.1:9092");
        assert!(
            !properties
                .iter()
                .any(|p| p.key.starts_with("sasl.") || p.key == "security.protocol")
        );
    }

    #[test]
    fn malformed_connection_strings_are_refused_without_echoing_them() {
        for bad in [
            "",
            "not a connection string",
            &format!(
                "Endpoint=https://x.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey={KEY}"
            ),
            &format!("Endpoint=sb:///;SharedAccessKeyName=a;SharedAccessKey={KEY}"),
            &format!("SharedAccessKeyName=a;SharedAccessKey={KEY}"),
            "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a",
            &format!("Endpoint=sb://bad host.net/;SharedAccessKey={KEY};SharedAccessKeyName=a"),
        ] {
            let err = EventHubsConnection::parse(&Secret::new(bad)).unwrap_err();
            assert!(!err.contains(KEY), "{err}");
        }
        let signature = "Endpoint=sb://ns.servicebus.windows.net;SharedAccessSignature=SharedAccessSignature sr=x&sig=y";
        assert!(EventHubsConnection::parse(&Secret::new(signature)).is_ok());
    }

    fn entra(
        config: impl FnOnce(&mut KafkaConfig),
        env: &[(&str, &str)],
    ) -> Result<KafkaSettings, Vec<(&'static str, String)>> {
        let mut kafka = settings(KafkaTarget::Bootstrap(String::new())).config;
        kafka.auth = Some(KafkaAuth::Entra);
        kafka.namespace = Some("shop-events.servicebus.windows.net".into());
        config(&mut kafka);
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        kafka.resolve_in(&SchemaRegistryConfig { url: None }, &|name| {
            env.get(name).cloned()
        })
    }

    #[test]
    fn entra_id_yields_oauthbearer_and_no_secret_property() {
        let kafka = entra(|_| {}, &[]).unwrap();
        let KafkaTarget::Entra(connection) = &kafka.target else {
            panic!("{:?}", kafka.target)
        };
        assert_eq!(
            connection.scope(),
            "https://shop-events.servicebus.windows.net/.default"
        );
        assert_eq!(
            connection.credential,
            EntraSource::ManagedIdentity {
                client_id: None,
                endpoint: MANAGED_IDENTITY_ENDPOINT.into()
            }
        );
        let properties = kafka.producer_properties();
        let shown: Vec<(&str, &str)> = properties
            .iter()
            .take(7)
            .map(|p| (p.key.as_str(), p.value.expose()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    "bootstrap.servers",
                    "shop-events.servicebus.windows.net:9093"
                ),
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "OAUTHBEARER"),
                ("socket.keepalive.enable", "true"),
                ("metadata.max.age.ms", "180000"),
                ("connections.max.idle.ms", "180000"),
                ("request.timeout.ms", "60000"),
            ]
        );
        assert!(
            kafka
                .producer_properties()
                .iter()
                .all(|p| matches!(p.value, PropertyValue::Plain(_)))
        );
    }

    #[test]
    fn the_entra_credential_follows_what_is_given() {
        // A namespace name alone is the public cloud's host.
        let parsed =
            crate::settings::Parser::parse(&namespace(), &::config::Value::from("Shop-Events"))
                .unwrap();
        assert_eq!(parsed, "shop-events.servicebus.windows.net");
        // The workload identity webhook's variables.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJ.federated.token").unwrap();
        let path = file.to_str().unwrap();
        let workload = entra(
            |_| {},
            &[
                ("AZURE_CLIENT_ID", "app-1"),
                ("AZURE_TENANT_ID", "tenant-1"),
                ("AZURE_FEDERATED_TOKEN_FILE", path),
                ("AZURE_AUTHORITY_HOST", "https://login.example/"),
            ],
        )
        .unwrap();
        let KafkaTarget::Entra(connection) = workload.target else {
            unreachable!()
        };
        assert_eq!(
            connection.credential,
            EntraSource::WorkloadIdentity {
                client_id: "app-1".into(),
                tenant_id: "tenant-1".into(),
                token_file: file.clone(),
                authority: "https://login.example".into()
            }
        );
        // A client secret wins under auto; settings win over the environment.
        let with_secret = entra(
            |k| k.entra_client_id = Some("app-2".into()),
            &[
                ("AZURE_CLIENT_ID", "app-1"),
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_SECRET", "s3cr3t-value"),
                ("AZURE_FEDERATED_TOKEN_FILE", path),
            ],
        )
        .unwrap();
        let KafkaTarget::Entra(connection) = &with_secret.target else {
            unreachable!()
        };
        let EntraSource::ClientSecret {
            client_id,
            secret,
            authority,
            ..
        } = &connection.credential
        else {
            panic!("{:?}", connection.credential)
        };
        assert_eq!(
            (client_id.as_str(), secret.expose(), authority.as_str()),
            ("app-2", "s3cr3t-value", ENTRA_AUTHORITY)
        );
        assert!(
            !format!("{with_secret:?}").contains("s3cr3t-value"),
            "the secret leaked into Debug"
        );
    }

    #[test]
    fn entra_settings_at_fault_are_named() {
        let problems = |config: fn(&mut KafkaConfig), env: &[(&str, &str)]| {
            entra(config, env)
                .unwrap_err()
                .into_iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let message = problems(|k| k.namespace = None, &[]);
        assert!(message.contains("kafka.namespace: missing"), "{message}");
        let message = problems(|k| k.connection_string = Some(Secret::new("x")), &[]);
        assert!(
            message.contains("kafka.connection_string: not used with kafka.auth = \"entra\""),
            "{message}"
        );
        let message = problems(|k| k.bootstrap_servers = Some("h:1".into()), &[]);
        assert!(
            message.contains("kafka.bootstrap_servers: not used"),
            "{message}"
        );
        let message = problems(
            |k| k.entra_credential = EntraCredential::WorkloadIdentity,
            &[],
        );
        assert!(
            message.contains("kafka.entra_token_file: missing"),
            "{message}"
        );
        let message = problems(
            |k| k.entra_credential = EntraCredential::WorkloadIdentity,
            &[("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token")],
        );
        assert!(
            message.contains("kafka.entra_client_id: missing")
                && message.contains("kafka.entra_tenant_id: missing")
                && message.contains("cannot read the federated token file `/nonexistent/token`"),
            "{message}"
        );
        let message = problems(
            |k| k.entra_credential = EntraCredential::ClientSecret,
            &[("AZURE_CLIENT_ID", "a"), ("AZURE_TENANT_ID", "t")],
        );
        assert!(
            message.contains("kafka.entra_client_secret: missing"),
            "{message}"
        );
        let mut plain = settings(KafkaTarget::Bootstrap(String::new())).config;
        plain.bootstrap_servers = Some("h:1".into());
        plain.namespace = Some("ns.servicebus.windows.net".into());
        let message = plain
            .resolve_in(&SchemaRegistryConfig { url: None }, &|_| None)
            .unwrap_err()[0]
            .1
            .clone();
        assert!(
            message.contains("used only with kafka.auth = \"entra\""),
            "{message}"
        );
        for bad in ["", "bad host", "-x.servicebus.windows.net", "a..b"] {
            assert!(
                crate::settings::Parser::parse(&namespace(), &::config::Value::from(bad)).is_err(),
                "{bad}"
            );
        }
    }
}
