//! Kafka and Event Hubs connection settings, and the librdkafka properties derived from them.
//!
//! Given an Event Hubs namespace connection string, everything else is derived: the bootstrap
//! server `<namespace>.servicebus.windows.net:9093`, SASL_SSL with PLAIN, user
//! `$ConnectionString`, and Microsoft's recommended producer settings. The connection string is
//! a [`Secret`]: it is never printed, logged or put in an error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ::config::ValueKind;

use crate::model::{PerTopic, Topic};
use crate::settings::{
    Describe, Invalid, Parser, Printed, Text, boolean, duration, one_of, optional, quoted, text_of,
};

/// A value that must never be shown: its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
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

/// An Event Hubs connection string given inline: never echoed; printed back as the namespace
/// it names, never as itself.
struct ConnectionString;

impl Describe for ConnectionString {
    fn value_name(&self) -> &'static str {
        "SECRET"
    }
    fn allowed(&self) -> String {
        "an Event Hubs namespace connection string".to_owned()
    }
}

impl Parser for ConnectionString {
    type Value = Secret;
    fn parse(&self, value: &::config::Value) -> Result<Secret, Invalid> {
        text_of(value).map(Secret::new)
    }
    fn print(&self, secret: &Secret) -> Printed {
        Printed::Comment(match EventHubsConnection::parse(secret) {
            Ok(connection) => format!("set (redacted): Event Hubs namespace {}", connection.host),
            Err(_) => "set (redacted)".to_owned(),
        })
    }
}

/// A secret read from a file (a mounted secret): the file's path prints, its content never.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub secret: Secret,
}

fn secret_file() -> Text<SecretFile> {
    Text::new(
        "FILE",
        "a file holding an Event Hubs connection string",
        |path| {
            std::fs::read_to_string(path)
                .map(|text| SecretFile {
                    path: PathBuf::from(path),
                    secret: Secret::new(text.trim()),
                })
                .map_err(|e| format!("cannot read the connection string from `{path}`: {e}"))
        },
        |file| quoted(&file.path.display().to_string()),
    )
}

/// A topic name: 1 to 249 letters, digits, `.`, `_` or `-`.
fn topic_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 249
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
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
        pub connection_string: Option<Secret> = optional(ConnectionString);
        /// A file holding the Event Hubs connection string (a mounted secret).
        pub connection_string_file: Option<SecretFile> = optional(secret_file());
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
}

/// Where the producer connects.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaTarget {
    /// Any Kafka-compatible cluster.
    Bootstrap(String),
    /// An Event Hubs namespace through its Kafka endpoint.
    EventHubs(EventHubsConnection),
}

impl KafkaTarget {
    /// The bootstrap servers, which are not secret.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            KafkaTarget::Bootstrap(servers) => servers.clone(),
            KafkaTarget::EventHubs(c) => c.bootstrap_server(),
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

impl KafkaSettings {
    /// The producer's librdkafka properties, in the order they are applied (later wins).
    pub fn producer_properties(&self) -> Vec<Property> {
        let plain = |key: &str, value: &str| Property {
            key: key.to_owned(),
            value: PropertyValue::Plain(value.to_owned()),
        };
        let mut properties = vec![plain("bootstrap.servers", &self.target.bootstrap_servers())];
        if let KafkaTarget::EventHubs(connection) = &self.target {
            properties.extend([
                plain("security.protocol", "SASL_SSL"),
                plain("sasl.mechanism", "PLAIN"),
                plain("sasl.username", "$ConnectionString"),
                Property {
                    key: "sasl.password".into(),
                    value: PropertyValue::Secret(connection.connection_string.clone()),
                },
                // Microsoft's recommendations for producers on the Kafka endpoint. librdkafka
                // sets connections.max.idle.ms itself only for hosts containing "azure".
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
}
