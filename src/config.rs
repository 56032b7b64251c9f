//! Command line and layered configuration.
//!
//! Layers, last wins: the shipped `config/default.toml` (compiled in), the file given with
//! `--config`, environment variables `SIMULATOR__<SECTION>__<KEY>`, then command-line flags.
//! Every value is read as text and parsed here, so that each problem is reported with the
//! setting's name, its flag, what was given and what is allowed; all problems are collected and
//! reported together before anything runs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};

use crate::clock::Speed;
use crate::faults::FaultSettings;
use crate::model::Topic;
use crate::model::{DAYS, HOURS, MAX_MINOR_UNITS, Money, Promotion, Timestamp, TrafficProfile};
use crate::sinks::FileCodec;
use crate::sinks::kafka::{EventHubsConnection, Framing, KafkaSettings, KafkaTarget, Secret};

/// The shipped defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "SIMULATOR";
/// Most shoppers one process simulates.
pub const MAX_SHOPPERS: u64 = 10_000_000;
/// Most products in the catalogue.
pub const MAX_PRODUCTS: u64 = 1_000_000;

/// Simulates shoppers of a retail shop and publishes their events as Avro.
#[derive(Debug, Default, Parser)]
#[command(name = "simulator", version, about, long_about = None)]
pub struct Cli {
    /// A TOML file of settings, layered over the shipped defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Orders per unit of time: N/s, N/m, N/h or N/d.
    #[arg(long, value_name = "N/UNIT", allow_hyphen_values = true)]
    pub rate: Option<String>,
    /// Number of simulated shoppers.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub shoppers: Option<String>,
    /// Seed of every random choice (default: a fresh one, logged at start).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub seed: Option<String>,
    /// Stop after this much simulated time, like 90s, 15m or 24h (default: never).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Simulated start instant, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// Simulated seconds per real second, or `max`.
    #[arg(long, value_name = "FACTOR|max", allow_hyphen_values = true)]
    pub speed: Option<String>,
    /// This replica's part of the population: I/N for replica I (from 0) of N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Traffic over time: realistic (daily and weekly curves, promotions) or flat.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Where events go: file, stdout or null.
    #[arg(long, value_name = "KIND")]
    pub sink: Option<String>,
    /// Root directory of the file sink.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<String>,
    /// Where the ground-truth ledger goes (default: <output-dir>/_ledger).
    #[arg(long, value_name = "DIR")]
    pub ledger_dir: Option<String>,
    /// Save the run's state here periodically and at shutdown, and resume from it at start.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Kafka bootstrap servers, host:port[,host:port...] (for --sink kafka).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_servers: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints (port 0: any free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// With --speed max and a --start in the past: stop on reaching the present instead of
    /// continuing in real time.
    #[arg(long)]
    pub stop_at_present: bool,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Cli {
    /// The settings the flags override, as `(key, flag, value)`.
    fn overrides(&self) -> Vec<(&'static str, String)> {
        [
            ("simulation.rate", &self.rate),
            ("simulation.shoppers", &self.shoppers),
            ("simulation.seed", &self.seed),
            ("simulation.duration", &self.duration),
            ("simulation.start", &self.start),
            ("simulation.speed", &self.speed),
            ("traffic.profile", &self.profile),
            ("simulation.shard", &self.shard),
            ("sink.kind", &self.sink),
            ("file.output_dir", &self.output_dir),
            ("ledger.dir", &self.ledger_dir),
            ("state.dir", &self.state_dir),
            ("kafka.bootstrap_servers", &self.bootstrap_servers),
            ("metrics.addr", &self.metrics_addr),
            ("log.format", &self.log_format),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .chain(
            self.stop_at_present
                .then(|| ("simulation.stop_at_present", "true".to_owned())),
        )
        .collect()
    }
}

/// Every setting: its key and, where it has one, its flag.
const SETTINGS: &[(&str, Option<&str>)] = &[
    ("simulation.rate", Some("--rate")),
    ("simulation.shoppers", Some("--shoppers")),
    ("simulation.seed", Some("--seed")),
    ("simulation.duration", Some("--duration")),
    ("simulation.start", Some("--start")),
    ("simulation.speed", Some("--speed")),
    ("traffic.profile", Some("--profile")),
    ("simulation.shard", Some("--shard")),
    ("simulation.stop_at_present", Some("--stop-at-present")),
    ("traffic.time_zone", None),
    ("traffic.hourly", None),
    ("traffic.weekly", None),
    ("traffic.activity_shape", None),
    ("traffic.customer_lifetime", None),
    ("traffic.promotions", None),
    ("sink.kind", Some("--sink")),
    ("file.output_dir", Some("--output-dir")),
    ("file.codec", None),
    ("ledger.dir", Some("--ledger-dir")),
    ("state.dir", Some("--state-dir")),
    ("state.interval", None),
    ("faults.duplicate_fraction", None),
    ("faults.late_fraction", None),
    ("faults.late_delay", None),
    ("faults.out_of_order_fraction", None),
    ("catalogue.products", None),
    ("catalogue.popularity_exponent", None),
    ("catalogue.reprice_probability", None),
    ("shop.currency", None),
    ("shop.tax_rate", None),
    ("shop.shipping_fee", None),
    ("shop.free_shipping_threshold", None),
    ("shop.discount_probability", None),
    ("shop.currencies", None),
    ("kafka.bootstrap_servers", Some("--bootstrap-servers")),
    ("kafka.connection_string", None),
    ("kafka.connection_string_file", None),
    ("kafka.framing", None),
    ("kafka.idempotence", None),
    ("kafka.delivery_timeout", None),
    ("kafka.flush_timeout", None),
    ("kafka.topics.products", None),
    ("kafka.topics.customers", None),
    ("kafka.topics.orders", None),
    ("kafka.topics.payments", None),
    ("kafka.properties", None),
    ("schema_registry.url", None),
    ("metrics.addr", Some("--metrics-addr")),
    ("log.format", Some("--log-format")),
    ("log.level", None),
];

/// Settings whose value is a free-form table.
const FREE_FORM: &[&str] = &["kafka.properties"];

/// A rate of orders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    text_count: f64,
    unit: char,
}

impl Rate {
    /// Orders per second.
    pub fn per_second(self) -> f64 {
        self.per_second
    }

    /// Orders per hour.
    pub fn per_hour(self) -> f64 {
        self.per_second * 3_600.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.text_count, self.unit)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected N/UNIT with N a number of orders greater than 0 and UNIT one of s, m, h, d (for example 500/h)";
        let Some((count, unit)) = text.trim().split_once('/') else {
            return Err(format!("`{text}` is not a rate: {expected}"));
        };
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            other => {
                return Err(format!(
                    "`{other}` is not a unit of time in `{text}`: {expected}"
                ));
            }
        };
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a number in `{text}`: {expected}", count.trim()))?;
        if !count.is_finite() || count <= 0.0 {
            return Err(format!(
                "the number of orders in `{text}` must be greater than 0: {expected}"
            ));
        }
        let per_second = count / seconds;
        if per_second > 10_000_000.0 {
            return Err(format!(
                "`{text}` is more than 10,000,000 orders per second"
            ));
        }
        Ok(Rate {
            per_second,
            text_count: count,
            unit: unit.trim().chars().next().unwrap_or('s'),
        })
    }
}

/// Which sink events go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    File,
    Stdout,
    Null,
    Kafka,
}

impl SinkKind {
    fn as_str(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Stdout => "stdout",
            SinkKind::Null => "null",
            SinkKind::Kafka => "kafka",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The shop's commercial settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopSettings {
    pub currency: String,
    pub tax_rate: f64,
    pub shipping_fee: Money,
    pub free_shipping_threshold: Money,
    pub discount_probability: f64,
    /// Currencies other than `currency` that some customers pay in.
    pub currencies: Vec<CurrencySettings>,
}

/// A currency some customers pay in, besides the shop's own.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrencySettings {
    /// ISO 4217 code.
    pub code: String,
    /// Units of this currency per unit of the shop's currency.
    pub rate: f64,
    /// Share of customers who pay in it.
    pub share: f64,
}

/// How traffic varies: over time, and between shoppers.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSettings {
    /// `realistic` or `flat`.
    pub profile_name: String,
    pub profile: TrafficProfile,
    /// Gamma shape of shoppers' activities; `None`: all equal.
    pub activity_shape: Option<f64>,
    /// Mean time a customer keeps coming back; `None`: forever.
    pub customer_lifetime: Option<Duration>,
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub rate: Rate,
    /// This replica's part: (index from 0, count). (0, 1) when alone.
    pub shard: (u32, u32),
    /// With `--speed max` from the past: stop at the present rather than go on in real time.
    pub stop_at_present: bool,
    pub traffic: TrafficSettings,
    pub shoppers: u32,
    pub seed: Option<u64>,
    pub duration: Option<Duration>,
    pub start: Option<Timestamp>,
    pub speed: Speed,
    pub sink: SinkKind,
    pub output_dir: PathBuf,
    pub codec: FileCodec,
    /// Where the ground-truth ledger is written.
    pub ledger_dir: PathBuf,
    /// Where the run's state is saved and resumed from; `None`: not saved.
    pub state_dir: Option<PathBuf>,
    /// Real time between two saves of the state.
    pub state_interval: Duration,
    /// Faults injected into the published stream.
    pub faults: FaultSettings,
    pub products: usize,
    pub popularity_exponent: f64,
    /// Probability that a product is off its list price for a week.
    pub reprice_probability: f64,
    pub shop: ShopSettings,
    /// Present when the sink is `kafka`.
    pub kafka: Option<KafkaSettings>,
    /// Where the HTTP endpoints listen.
    pub metrics_addr: std::net::SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
}

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting's key, like `simulation.rate`, or the file at fault.
    pub setting: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = SETTINGS
            .iter()
            .find(|(key, _)| *key == self.setting)
            .and_then(|(_, flag)| *flag);
        match flag {
            Some(flag) => write!(f, "{} ({flag}): {}", self.setting, self.message),
            None => write!(f, "{}: {}", self.setting, self.message),
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.problems.len() == 1 {
            "problem"
        } else {
            "problems"
        };
        write!(f, "invalid configuration ({} {noun}):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Collects the keys of a nested table as dotted paths.
fn collect_keys(prefix: &str, table: &Map<String, Value>, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match &value.kind {
            ValueKind::Table(inner) if !FREE_FORM.contains(&path.as_str()) => {
                collect_keys(&path, inner, out)
            }
            _ => out.push(path),
        }
    }
}

impl Settings {
    /// Loads the layers for `cli`, reading the environment from `env` (pairs of name and
    /// value), and validates the result.
    pub fn load(
        cli: &Cli,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let problem = |setting: &str, message: String| ConfigError {
            problems: vec![Problem {
                setting: setting.to_owned(),
                message,
            }],
        };
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml));
        if let Some(path) = &cli.config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                problem(
                    &path.display().to_string(),
                    format!("cannot read the configuration file: {e}"),
                )
            })?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        let env: Map<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        for (key, value) in cli.overrides() {
            builder = builder
                .set_override(key, value.as_str())
                .map_err(|e| problem(key, e.to_string()))?;
        }
        let merged = builder.build().map_err(|e| {
            let setting = cli
                .config
                .as_ref()
                .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
            problem(&setting, e.to_string())
        })?;
        Self::from_config(&merged)
    }

    fn from_config(merged: &Config) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let table: Map<String, Value> =
            merged.clone().try_deserialize().map_err(|e| ConfigError {
                problems: vec![Problem {
                    setting: "configuration".into(),
                    message: e.to_string(),
                }],
            })?;
        let mut keys = Vec::new();
        collect_keys("", &table, &mut keys);
        let known: BTreeSet<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
        for key in keys.iter().filter(|k| !known.contains(k.as_str())) {
            problems.push(Problem {
                setting: key.clone(),
                message: "unknown setting".into(),
            });
        }

        let mut reader = Reader {
            config: merged,
            problems: &mut problems,
        };
        let rate = reader.parse("simulation.rate", |s| s.parse::<Rate>());
        let shoppers = reader.parse("simulation.shoppers", |s| {
            parse_count(s, 1, MAX_SHOPPERS).map(|n| n as u32)
        });
        let seed = reader.parse_optional("simulation.seed", |s| {
            s.trim().parse::<u64>().map_err(|_| {
                format!(
                    "`{s}` is not a seed: expected a whole number from 0 to {}",
                    u64::MAX
                )
            })
        });
        let duration = reader.parse_optional("simulation.duration", parse_duration);
        let start = reader.parse_optional("simulation.start", |s| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| Timestamp::from_datetime(t.to_utc()))
                .map_err(|e| {
                    format!("`{s}` is not an RFC 3339 instant like 2026-01-01T00:00:00Z ({e})")
                })
        });
        let speed = reader.parse("simulation.speed", parse_speed);
        let stop_at_present = reader.parse("simulation.stop_at_present", |s| match s.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("`{s}` is not true or false")),
        });
        let shard = reader.parse("simulation.shard", |s| {
            let expected = "expected I/N: replica I (from 0) of N replicas, like 0/3";
            let (i, n) = s
                .trim()
                .split_once('/')
                .ok_or(format!("`{s}` is not a shard: {expected}"))?;
            match (i.trim().parse::<u32>(), n.trim().parse::<u32>()) {
                (Ok(i), Ok(n)) if n >= 1 && i < n && n <= 1024 => Ok((i, n)),
                _ => Err(format!(
                    "`{s}` is not a shard: {expected}, with I below N and N at most 1024"
                )),
            }
        });
        if let (Some((_, n)), Some(None)) = (&shard, &seed)
            && *n > 1
        {
            reader.problem(
                "simulation.shard",
                "replicas must share a seed (--seed): it draws the catalogue they all sell",
            );
        }
        let traffic = read_traffic(&mut reader);
        let sink = reader.parse("sink.kind", |s| match s.trim() {
            "file" => Ok(SinkKind::File),
            "stdout" => Ok(SinkKind::Stdout),
            "null" => Ok(SinkKind::Null),
            "kafka" => Ok(SinkKind::Kafka),
            _ => Err(format!(
                "`{s}` is not a sink: expected one of file, kafka, stdout, null"
            )),
        });
        let output_dir = reader.parse("file.output_dir", |s| {
            if s.trim().is_empty() {
                Err("the output directory must not be empty".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        });
        let ledger_dir = reader.parse_optional("ledger.dir", |s| {
            if s.trim().is_empty() {
                Err("the ledger directory must not be empty".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        });
        let duplicate_fraction =
            reader.parse("faults.duplicate_fraction", |s| parse_fraction(s, 0.0, 0.5));
        let late_fraction = reader.parse("faults.late_fraction", |s| parse_fraction(s, 0.0, 0.5));
        let late_delay = reader.parse("faults.late_delay", parse_duration);
        let state_dir = reader.parse_optional("state.dir", |s| {
            if s.trim().is_empty() {
                Err("an empty path".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        });
        let state_interval = reader.parse("state.interval", |s| {
            parse_duration(s).and_then(|d| {
                if d >= Duration::from_secs(1) {
                    Ok(d)
                } else {
                    Err(format!("`{s}` is too short: at least 1s"))
                }
            })
        });
        let reprice_probability = reader.parse("catalogue.reprice_probability", |s| {
            parse_fraction(s, 0.0, 1.0)
        });
        let out_of_order_fraction = reader.parse("faults.out_of_order_fraction", |s| {
            parse_fraction(s, 0.0, 0.5)
        });
        let codec = reader.parse("file.codec", |s| {
            s.trim()
                .parse::<FileCodec>()
                .map_err(|()| format!("`{s}` is not a codec: expected one of {}", FileCodec::NAMES))
        });
        let products = reader.parse("catalogue.products", |s| {
            parse_count(s, 1, MAX_PRODUCTS).map(|n| n as usize)
        });
        let popularity_exponent = reader.parse("catalogue.popularity_exponent", |s| {
            parse_fraction(s, 0.0, 10.0)
        });
        let currency = reader.parse("shop.currency", |s| {
            if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "`{s}` is not an ISO 4217 currency code like USD or EUR"
                ))
            }
        });
        let tax_rate = reader.parse("shop.tax_rate", |s| parse_fraction(s, 0.0, 1.0));
        let money = |s: &str| {
            let m: Money = s
                .trim()
                .parse()
                .map_err(|e: crate::model::ParseMoneyError| e.to_string())?;
            if m.cents() < 0 || m.cents() > MAX_MINOR_UNITS / 1000 {
                Err(format!(
                    "`{s}` must be between 0 and {}",
                    Money::from_cents(MAX_MINOR_UNITS / 1000)
                ))
            } else {
                Ok(m)
            }
        };
        let shipping_fee = reader.parse("shop.shipping_fee", money);
        let free_shipping_threshold = reader.parse("shop.free_shipping_threshold", money);
        let discount_probability =
            reader.parse("shop.discount_probability", |s| parse_fraction(s, 0.0, 1.0));
        let currencies = read_currencies(&mut reader, currency.as_deref());
        let log_format = reader.parse("log.format", |s| match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is not a log format: expected text or json")),
        });
        let log_level = reader.parse("log.level", |s| {
            tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_owned())
                .map_err(|e| format!("`{s}` is not a log filter: {e}"))
        });

        let kafka = read_kafka(&mut reader, sink);
        let metrics_addr = reader.parse("metrics.addr", |s| {
            s.trim()
                .parse::<std::net::SocketAddr>()
                .map_err(|_| format!("`{s}` is not an address like 0.0.0.0:9464 or 127.0.0.1:0"))
        });

        let settings = (|| {
            Some(Settings {
                rate: rate?,
                shard: shard?,
                stop_at_present: stop_at_present?,
                traffic: traffic?,
                shoppers: shoppers?,
                seed: seed?,
                duration: duration?,
                start: start?,
                speed: speed?,
                sink: sink?,
                ledger_dir: ledger_dir?
                    .unwrap_or_else(|| output_dir.clone().unwrap_or_default().join("_ledger")),
                output_dir: output_dir?,
                state_dir: state_dir?,
                state_interval: state_interval?,
                faults: FaultSettings {
                    duplicate_fraction: duplicate_fraction?,
                    late_fraction: late_fraction?,
                    late_delay: late_delay?,
                    out_of_order_fraction: out_of_order_fraction?,
                },
                codec: codec?,
                products: products?,
                popularity_exponent: popularity_exponent?,
                reprice_probability: reprice_probability?,
                shop: ShopSettings {
                    currency: currency?,
                    tax_rate: tax_rate?,
                    shipping_fee: shipping_fee?,
                    free_shipping_threshold: free_shipping_threshold?,
                    discount_probability: discount_probability?,
                    currencies: currencies?,
                },
                kafka: kafka?,
                metrics_addr: metrics_addr?,
                log_format: log_format?,
                log_level: log_level?,
            })
        })();
        match settings {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(ConfigError { problems }),
        }
    }

    /// The effective configuration as TOML, in the layout of `config/default.toml`.
    pub fn to_toml(&self) -> String {
        let line = |key: &str, value: Option<String>| match value {
            Some(value) => format!("{key} = {value}\n"),
            None => format!("# {key} is unset\n"),
        };
        let speed = match self.speed {
            Speed::Max => "max".to_owned(),
            Speed::Factor(f) => f.to_string(),
        };
        let codec = match self.codec {
            FileCodec::Null => "null",
            FileCodec::Deflate => "deflate",
            FileCodec::Snappy => "snappy",
        };
        let format = match self.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let quoted = |s: &str| format!("{s:?}");
        [
            "[simulation]\n".to_owned(),
            line("rate", Some(quoted(&self.rate.to_string()))),
            line("shoppers", Some(self.shoppers.to_string())),
            line(
                "shard",
                Some(quoted(&format!("{}/{}", self.shard.0, self.shard.1))),
            ),
            line("seed", self.seed.map(|s| s.to_string())),
            line(
                "duration",
                self.duration
                    .map(|d| quoted(&humantime::format_duration(d).to_string())),
            ),
            line("start", self.start.map(|s| quoted(&s.to_string()))),
            line("speed", Some(quoted(&speed))),
            line("stop_at_present", Some(self.stop_at_present.to_string())),
            "\n[traffic]\n".to_owned(),
            line("profile", Some(quoted(&self.traffic.profile_name))),
            line(
                "activity_shape",
                Some(
                    self.traffic
                        .activity_shape
                        .map_or_else(|| quoted("equal"), |s| format!("{s:?}")),
                ),
            ),
            line(
                "customer_lifetime",
                Some(quoted(&self.traffic.customer_lifetime.map_or_else(
                    || "forever".to_owned(),
                    |d| humantime::format_duration(d).to_string(),
                ))),
            ),
            format!(
                "# {} promotion(s)\n",
                self.traffic.profile.promotions().len()
            ),
            "\n[sink]\n".to_owned(),
            line("kind", Some(quoted(self.sink.as_str()))),
            "\n[file]\n".to_owned(),
            line(
                "output_dir",
                Some(quoted(&self.output_dir.display().to_string())),
            ),
            line("codec", Some(quoted(codec))),
            "\n[ledger]\n".to_owned(),
            line("dir", Some(quoted(&self.ledger_dir.display().to_string()))),
            "\n[state]\n".to_owned(),
            line(
                "dir",
                self.state_dir
                    .as_ref()
                    .map(|d| quoted(&d.display().to_string())),
            ),
            line(
                "interval",
                Some(quoted(
                    &humantime::format_duration(self.state_interval).to_string(),
                )),
            ),
            "\n[faults]\n".to_owned(),
            line(
                "duplicate_fraction",
                Some(format!("{:?}", self.faults.duplicate_fraction)),
            ),
            line(
                "late_fraction",
                Some(format!("{:?}", self.faults.late_fraction)),
            ),
            line(
                "late_delay",
                Some(quoted(
                    &humantime::format_duration(self.faults.late_delay).to_string(),
                )),
            ),
            line(
                "out_of_order_fraction",
                Some(format!("{:?}", self.faults.out_of_order_fraction)),
            ),
            "\n[catalogue]\n".to_owned(),
            line("products", Some(self.products.to_string())),
            line(
                "popularity_exponent",
                Some(format!("{:?}", self.popularity_exponent)),
            ),
            line(
                "reprice_probability",
                Some(format!("{:?}", self.reprice_probability)),
            ),
            "\n[shop]\n".to_owned(),
            line("currency", Some(quoted(&self.shop.currency))),
            line("tax_rate", Some(format!("{:?}", self.shop.tax_rate))),
            line(
                "shipping_fee",
                Some(quoted(&self.shop.shipping_fee.to_string())),
            ),
            line(
                "free_shipping_threshold",
                Some(quoted(&self.shop.free_shipping_threshold.to_string())),
            ),
            line(
                "discount_probability",
                Some(format!("{:?}", self.shop.discount_probability)),
            ),
            self.shop
                .currencies
                .iter()
                .map(|c| {
                    format!(
                        "[[shop.currencies]]\ncode = {}\nrate = {:?}\nshare = {:?}\n",
                        quoted(&c.code),
                        c.rate,
                        c.share
                    )
                })
                .collect(),
            self.kafka.as_ref().map_or_else(String::new, kafka_toml),
            "\n[metrics]\n".to_owned(),
            line("addr", Some(quoted(&self.metrics_addr.to_string()))),
            "\n[log]\n".to_owned(),
            line("format", Some(quoted(format))),
            line("level", Some(quoted(&self.log_level))),
        ]
        .concat()
    }
}

/// The `kafka` and `schema_registry` sections of the printed configuration; the connection
/// string is never printed.
fn kafka_toml(kafka: &KafkaSettings) -> String {
    let mut out = String::from("\n[kafka]\n");
    match &kafka.target {
        KafkaTarget::Bootstrap(servers) => out += &format!("bootstrap_servers = {servers:?}\n"),
        KafkaTarget::EventHubs(c) => {
            out += &format!(
                "# connection_string is set (redacted): Event Hubs namespace {}\n",
                c.host
            )
        }
    }
    out += &format!(
        "framing = {:?}\nidempotence = {}\ndelivery_timeout = {:?}\nflush_timeout = {:?}\n",
        kafka.framing.as_str(),
        kafka.idempotence,
        humantime::format_duration(kafka.delivery_timeout).to_string(),
        humantime::format_duration(kafka.flush_timeout).to_string(),
    );
    out += "\n[kafka.topics]\n";
    for topic in Topic::ALL {
        out += &format!("{topic} = {:?}\n", kafka.topics[topic.index()]);
    }
    out += "\n[kafka.properties]\n";
    for (key, value) in &kafka.properties {
        out += &format!("{key:?} = {value:?}\n");
    }
    if let Some(url) = &kafka.schema_registry_url {
        out += &format!("\n[schema_registry]\nurl = {url:?}\n");
    }
    out
}

/// Reads settings as text and records the problems.
struct Reader<'a> {
    config: &'a Config,
    problems: &'a mut Vec<Problem>,
}

impl Reader<'_> {
    fn text(&mut self, key: &str) -> Option<Option<String>> {
        match self.config.get::<String>(key) {
            Ok(text) => Some(Some(text)),
            Err(config::ConfigError::NotFound(_)) => Some(None),
            Err(e) => {
                self.problems.push(Problem {
                    setting: key.to_owned(),
                    message: format!("expected a single value: {e}"),
                });
                None
            }
        }
    }

    fn problem(&mut self, key: &str, message: &str) {
        self.problems.push(Problem {
            setting: key.to_owned(),
            message: message.to_owned(),
        });
    }

    /// A free-form table of text values, like `kafka.properties`.
    fn table(&mut self, key: &str) -> Option<Vec<(String, String)>> {
        match self
            .config
            .get::<std::collections::BTreeMap<String, String>>(key)
        {
            Ok(table) => Some(table.into_iter().collect()),
            Err(config::ConfigError::NotFound(_)) => Some(Vec::new()),
            Err(e) => {
                self.problem(
                    key,
                    &format!("expected a table of `\"name\" = \"value\"`: {e}"),
                );
                None
            }
        }
    }

    /// A setting that must be present.
    fn parse<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match self.parse_optional(key, parse)? {
            Some(value) => Some(value),
            None => {
                self.problems.push(Problem {
                    setting: key.to_owned(),
                    message: "missing".into(),
                });
                None
            }
        }
    }

    /// A setting that may be absent: `Some(None)` when absent, `None` when invalid.
    fn parse_optional<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.text(key)? {
            None => Some(None),
            Some(text) => match parse(&text) {
                Ok(value) => Some(Some(value)),
                Err(message) => {
                    self.problems.push(Problem {
                        setting: key.to_owned(),
                        message,
                    });
                    None
                }
            },
        }
    }
}

/// Reads the `traffic` section: the profile's curves apply only when it is `realistic`.
fn read_traffic(reader: &mut Reader<'_>) -> Option<TrafficSettings> {
    let name = reader.parse("traffic.profile", |s| match s.trim() {
        "realistic" | "flat" => Ok(s.trim().to_owned()),
        _ => Err(format!(
            "`{s}` is not a traffic profile: expected realistic or flat"
        )),
    });
    let time_zone = reader.parse("traffic.time_zone", |s| {
        s.trim()
            .parse::<chrono_tz::Tz>()
            .map_err(|_| format!("`{s}` is not an IANA time zone like Europe/Paris or UTC"))
    });
    let hourly = reader.parse("traffic.hourly", |s| {
        parse_curve::<HOURS>(s, "hour of day 0 to 23")
    });
    let weekly = reader.parse("traffic.weekly", |s| {
        parse_curve::<DAYS>(s, "day of week Monday to Sunday")
    });
    let activity_shape = reader.parse("traffic.activity_shape", |s| match s.trim() {
        "equal" => Ok(None),
        text => match text.parse::<f64>() {
            Ok(x) if x.is_finite() && (0.05..=1000.0).contains(&x) => Ok(Some(x)),
            _ => Err(format!(
                "`{s}` is neither a gamma shape from 0.05 to 1000 (lower: more unequal shoppers) nor `equal`"
            )),
        },
    });
    let customer_lifetime = reader.parse("traffic.customer_lifetime", |s| match s.trim() {
        "forever" => Ok(None),
        text => parse_duration(text).and_then(|d| {
            if d >= Duration::from_secs(3_600) {
                Ok(Some(d))
            } else {
                Err(format!("`{s}` is too short: at least 1h, or `forever`"))
            }
        }),
    });
    let promotions = read_promotions(reader);
    let name = name?;
    let profile = if name == "flat" {
        TrafficProfile::flat()
    } else {
        match TrafficProfile::new(time_zone?, hourly?, weekly?, promotions?) {
            Ok(profile) => profile,
            Err(message) => {
                reader.problem("traffic", &message);
                return None;
            }
        }
    };
    Some(TrafficSettings {
        profile_name: name,
        profile,
        activity_shape: activity_shape?,
        customer_lifetime: customer_lifetime?,
    })
}

/// `N` non-negative numbers separated by spaces or commas.
fn parse_curve<const N: usize>(text: &str, what: &str) -> Result<[f64; N], String> {
    let numbers: Vec<f64> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| format!("`{t}` is not a number"))
        })
        .collect::<Result<_, _>>()?;
    let curve: [f64; N] = numbers.try_into().map_err(|v: Vec<f64>| {
        format!("expected {N} factors, one per {what}, and got {}", v.len())
    })?;
    if curve.iter().any(|f| !f.is_finite() || *f < 0.0) || curve.iter().sum::<f64>() <= 0.0 {
        return Err("factors must be 0 or more, and not all 0".into());
    }
    Ok(curve)
}

/// The `[[traffic.promotions]]` tables: name, start, end, uplift, and optionally category and
/// discount.
fn read_promotions(reader: &mut Reader<'_>) -> Option<Vec<Promotion>> {
    let key = "traffic.promotions";
    let tables = tables_of(reader, key)?;
    let mut promotions = Vec::new();
    let mut ok = true;
    for (i, table) in tables.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let known = ["name", "start", "end", "uplift", "category", "discount"];
        for unknown in table.keys().filter(|k| !known.contains(&k.as_str())) {
            reader.problem(&format!("{at}.{unknown}"), "unknown setting");
            ok = false;
        }
        for required in ["name", "start", "end", "uplift"] {
            if !table.contains_key(required) {
                reader.problem(&format!("{at}.{required}"), "missing");
            }
        }
        let field = |name: &str| table.get(name).cloned();
        let instant = |text: Option<String>| {
            text.map(|t| {
                chrono::DateTime::parse_from_rfc3339(t.trim())
                    .map(|d| Timestamp::from_datetime(d.to_utc()))
                    .map_err(|_| format!("`{t}` is not an RFC 3339 instant"))
            })
        };
        let name = field("name");
        let start = instant(field("start"));
        let end = instant(field("end"));
        let uplift = field("uplift").map(|t| parse_fraction(&t, 0.01, 100.0));
        let category = field("category");
        if let Some(category) = &category
            && !crate::model::Catalogue::category_names().any(|c| c == category)
        {
            let names: Vec<&str> = crate::model::Catalogue::category_names().collect();
            reader.problem(
                &format!("{at}.category"),
                &format!(
                    "`{category}` is not a category: expected one of {}",
                    names.join(", ")
                ),
            );
            ok = false;
        }
        let discount = field("discount").map(|t| parse_fraction(&t, 0.0, 0.9));
        fn check<T>(
            reader: &mut Reader<'_>,
            key: String,
            result: Option<Result<T, String>>,
        ) -> Option<T> {
            match result? {
                Ok(value) => Some(value),
                Err(message) => {
                    reader.problem(&key, &message);
                    None
                }
            }
        }
        let start = check(reader, format!("{at}.start"), start);
        let end = check(reader, format!("{at}.end"), end);
        let uplift = check(reader, format!("{at}.uplift"), uplift);
        let discount = check(reader, format!("{at}.discount"), discount.or(Some(Ok(0.0))));
        match (name, start, end, uplift, discount) {
            (Some(name), Some(start), Some(end), Some(uplift), Some(discount)) => {
                promotions.push(Promotion {
                    name,
                    start,
                    end,
                    uplift,
                    category,
                    discount,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(promotions)
}

/// The array of tables `[[key]]`, each field as text (none if absent); `None`, with the problem
/// recorded, if it is something else.
fn tables_of(
    reader: &mut Reader<'_>,
    key: &str,
) -> Option<Vec<std::collections::BTreeMap<String, String>>> {
    match reader
        .config
        .get::<Vec<std::collections::BTreeMap<String, String>>>(key)
    {
        Ok(tables) => Some(tables),
        Err(config::ConfigError::NotFound(_)) => Some(Vec::new()),
        Err(e) => {
            reader.problem(
                key,
                &format!("expected [[{key}]] tables of text and numbers: {e}"),
            );
            None
        }
    }
}

/// `[[shop.currencies]]`: other currencies, each with its rate against the shop's currency
/// and its share of customers; codes distinct, shares adding up to less than 1.
fn read_currencies(reader: &mut Reader<'_>, base: Option<&str>) -> Option<Vec<CurrencySettings>> {
    let key = "shop.currencies";
    let tables = tables_of(reader, key)?;
    let mut currencies: Vec<CurrencySettings> = Vec::new();
    let mut ok = true;
    for (i, table) in tables.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let mut problem = |field: &str, message: String| {
            reader.problem(&format!("{at}.{field}"), &message);
            ok = false;
        };
        for unknown in table
            .keys()
            .filter(|k| !["code", "rate", "share"].contains(&k.as_str()))
        {
            problem(unknown, "unknown setting".to_owned());
        }
        let code = table.get("code").map(|c| c.trim().to_owned());
        match &code {
            None => problem("code", "missing".to_owned()),
            Some(c) if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) => problem(
                "code",
                format!("`{c}` is not an ISO 4217 currency code like EUR"),
            ),
            Some(c) if Some(c.as_str()) == base || currencies.iter().any(|o| &o.code == c) => {
                problem(
                    "code",
                    format!("`{c}` is listed twice (or is shop.currency)"),
                )
            }
            Some(_) => {}
        }
        let mut number = |field: &str, low: f64, high: f64| match table.get(field) {
            None => {
                problem(field, "missing".to_owned());
                None
            }
            Some(text) => match parse_fraction(text, low, high) {
                Ok(x) if x > 0.0 => Some(x),
                Ok(_) => {
                    problem(field, format!("`{text}` must be more than 0"));
                    None
                }
                Err(message) => {
                    problem(field, message);
                    None
                }
            },
        };
        let rate = number("rate", 0.0, 10_000.0);
        let share = number("share", 0.0, 1.0);
        if let (Some(code), Some(rate), Some(share)) = (code, rate, share) {
            currencies.push(CurrencySettings { code, rate, share });
        }
    }
    let total: f64 = currencies.iter().map(|c| c.share).sum();
    if total >= 1.0 {
        reader.problem(
            key,
            &format!(
                "the shares add up to {total}: they must leave some customers to shop.currency"
            ),
        );
        ok = false;
    }
    ok.then_some(currencies)
}

/// Reads the `kafka` and `schema_registry` sections; the connection target is required only
/// when the sink is `kafka`. Returns `Some(None)` for other sinks, `None` on problems.
fn read_kafka(reader: &mut Reader<'_>, sink: Option<SinkKind>) -> Option<Option<KafkaSettings>> {
    let bootstrap = reader.parse_optional("kafka.bootstrap_servers", |s| {
        let s = s.trim();
        if s.is_empty() || s.split(',').any(|server| !server.trim().contains(':')) {
            Err(format!(
                "`{s}` is not a list of host:port separated by commas"
            ))
        } else {
            Ok(s.to_owned())
        }
    });
    // The secret is never echoed in a message.
    let inline = reader.parse_optional("kafka.connection_string", |s| Ok(Secret::new(s)));
    let from_file = reader.parse_optional("kafka.connection_string_file", |path| {
        std::fs::read_to_string(path)
            .map(|text| Secret::new(text.trim()))
            .map_err(|e| format!("cannot read the connection string from `{path}`: {e}"))
    });
    let framing = reader.parse("kafka.framing", |s| match s.trim() {
        "raw" => Ok(Framing::Raw),
        "confluent" => Ok(Framing::Confluent),
        _ => Err(format!("`{s}` is not a framing: expected raw or confluent")),
    });
    let registry = reader.parse_optional("schema_registry.url", |s| {
        let s = s.trim();
        if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len() {
            Ok(s.trim_end_matches('/').to_owned())
        } else {
            Err(format!("`{s}` is not an http:// or https:// URL"))
        }
    });
    let idempotence = reader.parse("kafka.idempotence", |s| match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{s}` is not true or false")),
    });
    let delivery_timeout = reader.parse("kafka.delivery_timeout", parse_duration);
    let flush_timeout = reader.parse("kafka.flush_timeout", parse_duration);
    let mut topics: [Option<String>; 4] = Default::default();
    for topic in Topic::ALL {
        topics[topic.index()] = reader.parse(&format!("kafka.topics.{topic}"), |s| {
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
        });
    }
    let properties = reader.table("kafka.properties");

    let inline = inline?;
    let from_file = from_file?;
    let bootstrap = bootstrap?;
    if sink? != SinkKind::Kafka {
        return Some(None);
    }
    let connection_string = match (inline, from_file) {
        (Some(_), Some(_)) => {
            reader.problem(
                "kafka.connection_string",
                "set either the connection string or kafka.connection_string_file, not both",
            );
            return None;
        }
        (inline, from_file) => inline.or(from_file),
    };
    let target = match (connection_string, bootstrap) {
        (Some(_), Some(_)) => {
            reader.problem(
                "kafka.bootstrap_servers",
                "not used with an Event Hubs connection string, which gives the bootstrap server: set one or the other",
            );
            return None;
        }
        (Some(secret), None) => match EventHubsConnection::parse(&secret) {
            Ok(connection) => KafkaTarget::EventHubs(connection),
            Err(message) => {
                reader.problem(
                    "kafka.connection_string",
                    &format!("the connection string {message}"),
                );
                return None;
            }
        },
        (None, Some(servers)) => KafkaTarget::Bootstrap(servers),
        (None, None) => {
            reader.problem(
                "kafka.bootstrap_servers",
                "missing: the kafka sink needs kafka.bootstrap_servers, or an Event Hubs connection string \
                 in SIMULATOR__KAFKA__CONNECTION_STRING or a file named by kafka.connection_string_file",
            );
            return None;
        }
    };
    let framing = framing?;
    let registry = registry?;
    if framing == Framing::Confluent && registry.is_none() {
        reader.problem(
            "schema_registry.url",
            "missing: the confluent framing needs a schema registry",
        );
        return None;
    }
    let [products, customers, orders, payments] = topics;
    Some(Some(KafkaSettings {
        target,
        topics: [products?, customers?, orders?, payments?],
        framing,
        schema_registry_url: registry,
        idempotence: idempotence?,
        delivery_timeout: delivery_timeout?,
        flush_timeout: flush_timeout?,
        properties: properties?,
    }))
}

fn parse_count(text: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a whole number from {min} to {max}"
        )),
    }
}

fn parse_fraction(text: &str, min: f64, max: f64) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(x),
        _ => Err(format!("`{text}` is not a number from {min} to {max}")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like 90s, 15m, 24h or 7days ({e})"))?;
    if duration.is_zero() {
        return Err(format!("`{text}` is zero: the duration must be positive"));
    }
    if duration > Duration::from_secs(100 * 365 * 86_400) {
        return Err(format!("`{text}` is more than 100 years"));
    }
    Ok(duration)
}

fn parse_speed(text: &str) -> Result<Speed, String> {
    let text = text.trim();
    if text == "max" {
        return Ok(Speed::Max);
    }
    match text.trim_end_matches('x').parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1e9 => Ok(Speed::Factor(f)),
        _ => Err(format!(
            "`{text}` is not a speed: expected `max` or a factor greater than 0 (1 is real time, 60 is a simulated minute per second)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let cli =
            Cli::try_parse_from(std::iter::once("simulator").chain(args.iter().copied())).unwrap();
        Settings::load(
            &cli,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn problems(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        load(args, env)
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.rate.per_hour(), 500.0);
        assert_eq!(s.shoppers, 10_000);
        assert_eq!(s.sink, SinkKind::File);
        assert_eq!(s.output_dir, PathBuf::from("./data"));
        assert_eq!(s.speed, Speed::Factor(1.0));
        assert_eq!(s.seed, None);
        assert_eq!(s.shop.shipping_fee, Money::from_cents(599));
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.toml");
        std::fs::write(
            &file,
            "[simulation]\nrate = \"10/m\"\nshoppers = 7\nseed = 1\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = load(&["--config", f], &[]).unwrap();
        assert_eq!(
            (s.rate.per_second(), s.shoppers, s.seed),
            (10.0 / 60.0, 7, Some(1))
        );
        let env = [
            ("SIMULATOR__SIMULATION__SHOPPERS", "9"),
            ("SIMULATOR__SIMULATION__SEED", "2"),
        ];
        let s = load(&["--config", f], &env).unwrap();
        assert_eq!((s.shoppers, s.seed), (9, Some(2)));
        let s = load(&["--config", f, "--seed", "3"], &env).unwrap();
        assert_eq!((s.shoppers, s.seed), (9, Some(3)));
        let s = load(&[], &[("SIMULATOR__FILE__OUTPUT_DIR", "/tmp/x")]).unwrap();
        assert_eq!(s.output_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn bad_rates_are_refused_with_the_flag_named() {
        for (rate, needle) in [
            ("500/x", "`x` is not a unit of time"),
            ("0/h", "must be greater than 0"),
            ("-5/h", "must be greater than 0"),
            ("abc/h", "`abc` is not a number"),
            ("500", "is not a rate"),
            ("inf/s", "must be greater than 0"),
        ] {
            let p = problems(&["--rate", rate], &[]);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with("simulation.rate (--rate): "), "{}", p[0]);
            assert!(p[0].contains(needle), "{rate}: {}", p[0]);
            assert!(
                p[0].contains("s, m, h, d") || p[0].contains("more than"),
                "{}",
                p[0]
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = problems(
            &[
                "--duration",
                "soon",
                "--start",
                "yesterday",
                "--speed",
                "0",
                "--shoppers",
                "0",
                "--sink",
                "kafka2",
            ],
            &[
                ("SIMULATOR__SIMULATION__RAET", "1/s"),
                ("SIMULATOR__SHOP__CURRENCY", "usd"),
            ],
        );
        let joined = p.join("\n");
        for needle in [
            "simulation.duration (--duration): `soon` is not a duration",
            "simulation.start (--start): `yesterday` is not an RFC 3339 instant",
            "simulation.speed (--speed): `0` is not a speed",
            "simulation.shoppers (--shoppers): `0` is not a whole number from 1",
            "sink.kind (--sink): `kafka2` is not a sink: expected one of file, kafka, stdout, null",
            "simulation.raet: unknown setting",
            "shop.currency: `usd` is not an ISO 4217 currency code",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        assert_eq!(p.len(), 7, "{joined}");
    }

    #[test]
    fn unknown_keys_in_files_and_unreadable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.toml");
        std::fs::write(&file, "[simulation]\nrat = \"1/s\"\n[extra]\nx = 1\n").unwrap();
        let p = problems(&["--config", file.to_str().unwrap()], &[]);
        assert!(
            p.contains(&"simulation.rat: unknown setting".to_owned()),
            "{p:?}"
        );
        assert!(p.contains(&"extra.x: unknown setting".to_owned()), "{p:?}");

        std::fs::write(&file, "[simulation\nrate = ").unwrap();
        let p = problems(&["--config", file.to_str().unwrap()], &[]);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("sim.toml"), "{p:?}");

        let missing = dir.path().join("missing.toml");
        let p = problems(&["--config", missing.to_str().unwrap()], &[]);
        assert!(
            p[0].contains("missing.toml") && p[0].contains("cannot read"),
            "{p:?}"
        );
    }

    #[test]
    fn printed_configuration_loads_back_to_the_same_settings() {
        let s = load(
            &[
                "--seed",
                "5",
                "--duration",
                "1h 30m",
                "--speed",
                "max",
                "--start",
                "2026-01-01T00:00:00Z",
            ],
            &[],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("printed.toml");
        std::fs::write(&file, s.to_toml()).unwrap();
        let again = load(&["--config", file.to_str().unwrap()], &[]).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn other_currencies_are_validated_and_print_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("currencies.toml");
        std::fs::write(
            &file,
            "[[shop.currencies]]\ncode = \"EUR\"\nrate = 0.92\nshare = 0.3\n\
             [[shop.currencies]]\ncode = \"GBP\"\nrate = \"0.79\"\nshare = 0.1\n",
        )
        .unwrap();
        let s = load(&["--config", file.to_str().unwrap()], &[]).unwrap();
        assert_eq!(s.shop.currencies.len(), 2);
        assert_eq!(s.shop.currencies[1].code, "GBP");
        assert_eq!(s.shop.currencies[1].rate, 0.79);
        let printed = dir.path().join("printed.toml");
        std::fs::write(&printed, s.to_toml()).unwrap();
        assert_eq!(
            load(&["--config", printed.to_str().unwrap()], &[]).unwrap(),
            s
        );

        std::fs::write(
            &file,
            "[[shop.currencies]]\ncode = \"eur\"\nrate = 0.92\nshare = 0.7\nfee = 1\n\
             [[shop.currencies]]\ncode = \"USD\"\nshare = 0.5\n",
        )
        .unwrap();
        let p = problems(&["--config", file.to_str().unwrap()], &[]);
        for expected in [
            "shop.currencies[0].code: `eur` is not an ISO 4217",
            "shop.currencies[0].fee: unknown setting",
            "shop.currencies[1].code: `USD` is listed twice (or is shop.currency)",
            "shop.currencies[1].rate: missing",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(expected)),
                "{expected} in {p:?}"
            );
        }
        std::fs::write(
            &file,
            "[[shop.currencies]]\ncode = \"EUR\"\nrate = 1\nshare = 0.6\n\
             [[shop.currencies]]\ncode = \"GBP\"\nrate = 1\nshare = 0.5\n",
        )
        .unwrap();
        let p = problems(&["--config", file.to_str().unwrap()], &[]);
        assert!(
            p.iter().any(|m| m.contains("the shares add up to 1.1")),
            "{p:?}"
        );
    }

    const SECRET_KEY: &str = "c2VjcmV0LWtleS1zaG91bGQtbmV2ZXItbGVhaw==";

    fn connection_string() -> String {
        format!(
            "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SECRET_KEY}"
        )
    }

    #[test]
    fn kafka_target_comes_from_bootstrap_or_connection_string() {
        let s = load(
            &["--sink", "kafka", "--bootstrap-servers", "a:9092,b:9092"],
            &[],
        )
        .unwrap();
        assert_eq!(
            s.kafka.unwrap().target,
            KafkaTarget::Bootstrap("a:9092,b:9092".into())
        );

        let cs = connection_string();
        let s = load(
            &["--sink", "kafka"],
            &[("SIMULATOR__KAFKA__CONNECTION_STRING", &cs)],
        )
        .unwrap();
        let kafka = s.kafka.clone().unwrap();
        assert_eq!(
            kafka.target.bootstrap_servers(),
            "shop.servicebus.windows.net:9093"
        );
        assert!(!format!("{kafka:?}").contains(SECRET_KEY));
        assert!(!s.to_toml().contains(SECRET_KEY));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cs");
        std::fs::write(&file, format!("{cs}\n")).unwrap();
        let config = dir.path().join("sim.toml");
        std::fs::write(
            &config,
            format!(
                "[kafka]\nconnection_string_file = {:?}\n[kafka.properties]\n\"linger.ms\" = 20\n",
                file.display().to_string()
            ),
        )
        .unwrap();
        let s = load(
            &["--sink", "kafka", "--config", config.to_str().unwrap()],
            &[],
        )
        .unwrap();
        let kafka = s.kafka.unwrap();
        assert!(matches!(kafka.target, KafkaTarget::EventHubs(_)));
        assert_eq!(
            kafka.properties,
            vec![("linger.ms".to_owned(), "20".to_owned())]
        );
    }

    #[test]
    fn kafka_problems_are_named_and_never_show_the_secret() {
        let p = problems(&["--sink", "kafka"], &[]);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("kafka.bootstrap_servers (--bootstrap-servers): missing"),
            "{p:?}"
        );

        let cs = connection_string();
        let p = problems(
            &["--sink", "kafka", "--bootstrap-servers", "a:1"],
            &[("SIMULATOR__KAFKA__CONNECTION_STRING", &cs)],
        );
        assert!(p[0].contains("set one or the other"), "{p:?}");

        let bad = format!(
            "Endpoint=https://shop.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey={SECRET_KEY}"
        );
        let p = problems(
            &["--sink", "kafka"],
            &[("SIMULATOR__KAFKA__CONNECTION_STRING", &bad)],
        );
        assert!(
            p[0].starts_with("kafka.connection_string: the connection string has an `Endpoint`"),
            "{p:?}"
        );
        assert!(!p[0].contains(SECRET_KEY));

        let p = problems(
            &["--sink", "kafka", "--bootstrap-servers", "a:1"],
            &[
                ("SIMULATOR__KAFKA__FRAMING", "confluent"),
                (
                    "SIMULATOR__KAFKA__CONNECTION_STRING_FILE",
                    "/nonexistent/cs",
                ),
                ("SIMULATOR__KAFKA__TOPICS__ORDERS", "bad topic"),
                ("SIMULATOR__KAFKA__DELIVERY_TIMEOUT", "soon"),
                ("SIMULATOR__KAFKA__FLUSHTIMEOUT", "1s"),
            ],
        );
        let joined = p.join("\n");
        for needle in [
            "kafka.connection_string_file: cannot read the connection string from `/nonexistent/cs`",
            "kafka.topics.orders: `bad topic` is not a topic name",
            "kafka.delivery_timeout: `soon` is not a duration",
            "kafka.flushtimeout: unknown setting",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        let p = problems(
            &["--sink", "kafka", "--bootstrap-servers", "a:1"],
            &[("SIMULATOR__KAFKA__FRAMING", "confluent")],
        );
        assert_eq!(
            p,
            vec![
                "schema_registry.url: missing: the confluent framing needs a schema registry"
                    .to_owned()
            ]
        );
    }
}
