//! Kafka and Event Hubs connection settings, and the librdkafka properties derived from them.
//!
//! Given an Event Hubs namespace connection string, everything else is derived: the bootstrap
//! server `<namespace>.servicebus.windows.net:9093`, SASL_SSL with PLAIN, user
//! `$ConnectionString`, and Microsoft's recommended producer settings. The connection string is
//! a [`Secret`]: it is never printed, logged or put in an error.

use std::fmt;
use std::time::Duration;

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

/// How message values are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The plain Avro binary datum, as Spark's `from_avro(value, schema)` reads it.
    Raw,
    /// Magic byte 0, the 4-byte big-endian schema id, then the datum (Confluent wire format).
    Confluent,
}

impl Framing {
    /// The setting's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Raw => "raw",
            Framing::Confluent => "confluent",
        }
    }
}

/// Validated Kafka settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    /// Where to connect: a plain bootstrap list or an Event Hubs namespace.
    pub target: KafkaTarget,
    /// Topic names, by [`crate::model::Topic::index`].
    pub topics: [String; 4],
    pub framing: Framing,
    /// Base URL of a Confluent-compatible schema registry (required for `confluent` framing).
    pub schema_registry_url: Option<String>,
    pub idempotence: bool,
    /// How long librdkafka keeps trying to deliver a message (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long shutdown waits for outstanding deliveries.
    pub flush_timeout: Duration,
    /// librdkafka properties passed through, applied last.
    pub properties: Vec<(String, String)>,
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
        let timeout_ms = self.delivery_timeout.as_millis().to_string();
        properties.extend([
            plain(
                "enable.idempotence",
                if self.idempotence { "true" } else { "false" },
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
        properties.extend(self.properties.iter().map(|(k, v)| plain(k, v)));
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
            topics: ["products", "customers", "orders", "payments"].map(String::from),
            framing: Framing::Raw,
            schema_registry_url: None,
            idempotence: true,
            delivery_timeout: Duration::from_secs(300),
            flush_timeout: Duration::from_secs(30),
            properties: vec![("linger.ms".into(), "20".into())],
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
