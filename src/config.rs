//! Command line and layered configuration.
//!
//! Layers, last wins: the shipped `config/default.toml` (compiled in), the file given with
//! `--config`, environment variables `SIMULATOR__<SECTION>__<KEY>`, then command-line flags.
//! The `config` crate layers them; each setting is then parsed once, by the parser its
//! component declared with [`crate::section!`], so that every problem is reported with the
//! setting's name, its flag, what was given, what is allowed and where the value came from;
//! all problems are collected and reported together before anything runs.
//!
//! The sections, and who declares them: `simulation` and `log` here; `traffic`, `catalogue`,
//! `customers` and `shop` in [`crate::shoppers`]; `sink` in [`crate::sinks`]; `file` in the file sink;
//! `kafka` and `schema_registry` in [`crate::sinks::kafka`]; `ledger`, `state`, `faults` and
//! `metrics` in [`crate::ledger`], [`crate::state`], [`crate::faults`] and
//! [`crate::endpoints`]; `api` in [`crate::api`]. The command line, the printed configuration, the run's identity and
//! the README's settings table all come from those declarations.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};
use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};

use crate::api::ApiSettings;
use crate::cdc::DebeziumSettings;
use crate::clock::Speed;
use crate::endpoints::MetricsSettings;
use crate::faults::FaultSettings;
use crate::ledger::LedgerSettings;
use crate::model::Timestamp;
use crate::settings::{
    self, Declaration, Origin, Origins, Printer, Problem, Reader, Section, Text, boolean, count,
    duration, one_of, optional, or_word, parsed, quoted,
};
use crate::shoppers::{CatalogueSettings, CustomerSettings, ShopSettings, TrafficSettings};
use crate::sinks::kafka::{KafkaConfig, SchemaRegistryConfig};
use crate::sinks::{FileSettings, SinkKind, SinkSettings};
use crate::state::{Identity, StateSettings};

/// The shipped defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
pub use crate::settings::ENV_PREFIX;
/// Most shoppers one process simulates.
pub const MAX_SHOPPERS: u64 = 10_000_000;

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
        let given = count.trim();
        let count: f64 = given
            .parse()
            .map_err(|_| format!("`{given}` is not a number in `{text}`: {expected}"))?;
        if !count.is_finite() {
            return Err(format!(
                "`{given}` is not a finite number in `{text}`: {expected}"
            ));
        }
        if count <= 0.0 {
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

/// This replica's part of the population: replica `index` (from 0) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected I/N: replica I (from 0) of N replicas, like 0/3";
        let (i, n) = s
            .trim()
            .split_once('/')
            .ok_or(format!("`{s}` is not a shard: {expected}"))?;
        match (i.trim().parse::<u32>(), n.trim().parse::<u32>()) {
            (Ok(index), Ok(count)) if count >= 1 && index < count && count <= 1024 => {
                Ok(Shard { index, count })
            }
            _ => Err(format!(
                "`{s}` is not a shard: {expected}, with I below N and N at most 1024"
            )),
        }
    }
}

/// The earliest start accepted: retail data before 1900 has no reader that needs it, and
/// Tableau's and Excel's calendars begin there (Synapse's `datetime` in 1753).
pub const EARLIEST_START: &str = "1900-01-01T00:00:00Z";
/// The latest start accepted: a run of the longest duration (100 years) from it still ends
/// before the year 10000, so every event time has a four-digit year, as file paths
/// (`date=YYYY-MM-DD`), Python's `datetime` (fastavro), Spark and DuckDB need.
pub const LATEST_START: &str = "9899-12-31T23:59:59Z";

/// An RFC 3339 instant from [`EARLIEST_START`] to [`LATEST_START`].
fn instant() -> Text<Timestamp> {
    Text::new(
        "RFC3339",
        format!(
            "an RFC 3339 instant like 2026-01-01T00:00:00Z, from {EARLIEST_START} to {LATEST_START}"
        ),
        |s| {
            let at = chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| Timestamp::from_datetime(t.to_utc()))
                .map_err(|e| {
                    format!("`{s}` is not an RFC 3339 instant like 2026-01-01T00:00:00Z ({e})")
                })?;
            let bound = |text: &str| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| Timestamp::from_datetime(t.to_utc()))
                    .unwrap_or_default()
            };
            if at < bound(EARLIEST_START) || at > bound(LATEST_START) {
                return Err(format!(
                    "`{s}` is outside the instants every reader of the output handles: from \
                     {EARLIEST_START} to {LATEST_START}"
                ));
            }
            Ok(at)
        },
        |t| quoted(&t.to_string()),
    )
}

fn seed() -> Text<u64> {
    Text::new(
        "N",
        format!("a whole number from 0 to {}", u64::MAX),
        |s| {
            s.trim().parse::<u64>().map_err(|_| {
                format!(
                    "`{s}` is not a seed: expected a whole number from 0 to {}",
                    u64::MAX
                )
            })
        },
        u64::to_string,
    )
}

crate::section! {
    /// What to simulate, from when, for how long and how fast.
    pub struct SimulationSettings in "simulation" {
        /// Orders per unit of time: N/s, N/m, N/h or N/d.
        pub rate: Rate = parsed("N/UNIT", "N/s, N/m, N/h or N/d, N greater than 0"),
            flag = "--rate", identity = true;
        /// Number of simulated shoppers; the rate is shared among them.
        pub shoppers: u32 = settings::count(1, MAX_SHOPPERS).map(|n| n as u32, |n| u64::from(*n)),
            flag = "--shoppers", identity = true;
        /// This replica's part of the population: I/N for replica I (from 0) of N; it
        /// simulates every N-th shopper at rate/N, and needs --seed.
        pub shard: Shard = parsed("I/N", "I/N with I below N and N at most 1024"),
            flag = "--shard", identity = true;
        /// Seed of every random choice (default: a fresh one, logged at start).
        pub seed: Option<u64> = optional(seed()), flag = "--seed";
        /// Stop after this much simulated time, like 90s, 15m or 24h (default: never).
        pub duration: Option<Duration> = optional(duration(Duration::ZERO)), flag = "--duration";
        /// Simulated start instant, RFC 3339 (default: now).
        pub start: Option<Timestamp> = optional(instant()), flag = "--start";
        /// Simulated seconds per real second, or `max`.
        pub speed: Speed = parsed("FACTOR|max", "`max` or a factor greater than 0"),
            flag = "--speed";
        /// With --speed max and a --start in the past: stop on reaching the present instead
        /// of continuing in real time.
        pub stop_at_present: bool = boolean(), flag = "--stop-at-present";
        /// The shoppers' worker threads, or `auto`: one for a run paced below 10,000 orders a
        /// real second, half the cores (one or two) for a faster one into Kafka, else a core each.
        /// A single worker is the thread that drives the run (a `current_thread` runtime).
        pub workers: Option<usize> =
            or_word("auto", count(1, 256).map(|n| n as usize, |n| *n as u64)), flag = "--workers";
    }
}

crate::named! {
    /// Log output format.
    pub enum LogFormat {
        Text = "text",
        Json = "json",
    }
}

fn log_filter() -> Text<String> {
    Text::new(
        "FILTER",
        "a tracing filter like info or simulator=debug",
        |s| {
            tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_owned())
                .map_err(|e| format!("`{s}` is not a log filter: {e}"))
        },
        |s| quoted(s),
    )
}

crate::section! {
    /// Logs, on standard error.
    pub struct LogSettings in "log" {
        /// Log format: text or json.
        pub format: LogFormat = one_of("FORMAT", "a log format", LogFormat::names()), flag = "--log-format";
        /// A tracing filter, like info or simulator=debug; RUST_LOG overrides it.
        pub level: String = log_filter();
    }
}

/// Declares the settings: each section, in the order they are read and printed.
macro_rules! settings {
    ($($field:ident: $section:ty),* $(,)?) => {
        /// Validated settings: one section per component.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $(pub $field: $section,)*
        }

        impl Settings {
            /// Every setting, section by section.
            pub fn declarations() -> Vec<Declaration> {
                [$(<$section as Section>::declarations()),*].concat()
            }

            fn read(reader: &mut Reader<'_>) -> Option<Self> {
                $(let $field = <$section as Section>::read(reader);)*
                Some(Self { $($field: $field?,)* })
            }

            /// The effective configuration as TOML, in the layout of `config/default.toml`.
            /// Secrets are never printed.
            pub fn to_toml(&self) -> String {
                let mut printer = Printer::default();
                $(self.$field.print(&mut printer);)*
                printer.finish()
            }

            fn identity_settings(&self) -> Vec<(String, String)> {
                [$(self.$field.identity()),*].concat()
            }
        }
    };
}

settings! {
    simulation: SimulationSettings,
    traffic: TrafficSettings,
    sink: SinkSettings,
    file: FileSettings,
    ledger: LedgerSettings,
    state: StateSettings,
    faults: FaultSettings,
    kafka: KafkaConfig,
    schema_registry: SchemaRegistryConfig,
    catalogue: CatalogueSettings,
    customers: CustomerSettings,
    debezium: DebeziumSettings,
    shop: ShopSettings,
    metrics: MetricsSettings,
    api: ApiSettings,
    log: LogSettings,
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn one(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                setting: setting.into(),
                flag: None,
                message: message.into(),
                origin: None,
            }],
        }
    }
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

/// The command line: a configuration file, the settings given as flags (by key, as typed),
/// and whether to print the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    pub config: Option<PathBuf>,
    pub print_config: bool,
    /// `simulator serve`: serve the output directory's hours over the pull API, without
    /// simulating.
    pub serve: bool,
    /// `(key, value)` of each setting given as a flag.
    pub flags: Vec<(&'static str, String)>,
}

impl Cli {
    /// The command line's grammar, from the declarations.
    pub fn command() -> Command {
        let mut command = Command::new("simulator")
            .version(env!("CARGO_PKG_VERSION"))
            .about(env!("CARGO_PKG_DESCRIPTION"))
            .subcommand(Command::new("serve").about(
                "Serve the hours of an output directory (--output-dir) over the pull API on \
                 --metrics-addr, without simulating.",
            ))
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .global(true)
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("A TOML file of settings, layered over the shipped defaults."),
            );
        for declaration in Settings::declarations() {
            let Some(flag) = declaration.flag else {
                continue;
            };
            let long_help = format!(
                "{}\n\nAllowed: {}.\nSetting: {} (environment: {}).",
                declaration.help,
                declaration.allowed,
                declaration.key,
                declaration.env_var()
            );
            let arg = Arg::new(declaration.key)
                .long(flag.trim_start_matches("--"))
                .global(true)
                .help(declaration.help.clone())
                .long_help(long_help);
            command = command.arg(if declaration.switch {
                arg.action(ArgAction::SetTrue)
            } else {
                arg.value_name(declaration.value_name)
                    .allow_hyphen_values(true)
            });
        }
        command.arg(
            Arg::new("print-config")
                .long("print-config")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print the effective configuration and exit."),
        )
    }

    /// Parses `args` (the first is the program's name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let mut flags = Vec::new();
        for declaration in Settings::declarations() {
            if declaration.flag.is_none() {
                continue;
            }
            if declaration.switch {
                if matches.get_flag(declaration.key) {
                    flags.push((declaration.key, "true".to_owned()));
                }
            } else if let Some(value) = matches.get_one::<String>(declaration.key) {
                flags.push((declaration.key, value.clone()));
            }
        }
        Ok(Self {
            config: matches.get_one::<PathBuf>("config").cloned(),
            print_config: matches.get_flag("print-config"),
            serve: matches.subcommand_matches("serve").is_some(),
            flags,
        })
    }

    /// The process's own command line.
    pub fn try_parse() -> Result<Self, clap::Error> {
        Self::try_parse_from(std::env::args_os())
    }

    /// The same command line with `key` set as by its flag, for runs embedded in tests and
    /// benchmarks.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.flags.push((key, value.into()));
        self
    }
}

/// Collects the keys of a nested table as dotted paths, not entering the tables that are one
/// setting's value.
fn collect_keys(prefix: &str, table: &Map<String, Value>, tables: &BTreeSet<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match &value.kind {
            ValueKind::Table(inner) if !tables.contains(path.as_str()) => {
                out.extend(collect_keys(&path, inner, tables))
            }
            _ => out.push(path),
        }
    }
    out
}

/// The keys a configuration source sets.
fn keys_of(
    source: impl config::Source + Send + Sync + 'static,
    tables: &BTreeSet<&str>,
) -> Result<Vec<String>, config::ConfigError> {
    let table: Map<String, Value> = Config::builder()
        .add_source(source)
        .build()?
        .try_deserialize()?;
    Ok(collect_keys("", &table, tables))
}

impl Settings {
    /// Loads the layers for `cli`, reading the environment from `env` (pairs of name and
    /// value), and validates the result.
    pub fn load(
        cli: &Cli,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let declarations = Self::declarations();
        let tables: BTreeSet<&str> = declarations
            .iter()
            .filter(|d| d.table)
            .map(|d| d.key)
            .collect();
        let mut origins = Origins::default();
        let mut record = |keys: Vec<String>, origin: &dyn Fn(&str) -> Origin| {
            for key in keys {
                let from = origin(&key);
                origins.set(key, from);
            }
        };

        let defaults = File::from_str(DEFAULT_CONFIG, FileFormat::Toml);
        let mut builder = Config::builder().add_source(defaults.clone());
        let keys = keys_of(defaults, &tables)
            .map_err(|e| ConfigError::one("config/default.toml", e.to_string()))?;
        record(keys, &|_| Origin::Default);

        if let Some(path) = &cli.config {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::one(&name, format!("cannot read the configuration file: {e}"))
            })?;
            let file = File::from_str(&text, FileFormat::Toml);
            let keys = keys_of(file.clone(), &tables)
                .map_err(|e| ConfigError::one(&name, e.to_string()))?;
            record(keys, &|_| Origin::File(path.clone()));
            builder = builder.add_source(file);
        }

        let env: Map<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(env));
        let keys = keys_of(environment.clone(), &tables)
            .map_err(|e| ConfigError::one("environment", e.to_string()))?;
        record(keys, &|key| Origin::Env(settings::env_var(key)));
        builder = builder.add_source(environment);

        for (key, value) in &cli.flags {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|e| ConfigError::one(*key, e.to_string()))?;
            let flag = declarations
                .iter()
                .find(|d| d.key == *key)
                .and_then(|d| d.flag)
                .unwrap_or(key);
            origins.set((*key).to_owned(), Origin::Flag(flag.to_owned()));
        }
        let merged = builder.build().map_err(|e| {
            let setting = cli
                .config
                .as_ref()
                .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
            ConfigError::one(setting, e.to_string())
        })?;
        Self::from_config(&merged, &origins, &declarations, &tables)
    }

    fn from_config(
        merged: &Config,
        origins: &Origins,
        declarations: &[Declaration],
        tables: &BTreeSet<&str>,
    ) -> Result<Self, ConfigError> {
        let table: Map<String, Value> = merged
            .clone()
            .try_deserialize()
            .map_err(|e| ConfigError::one("configuration", e.to_string()))?;
        let mut reader = Reader::new(merged, origins, declarations);
        let known: BTreeSet<&str> = declarations.iter().map(|d| d.key).collect();
        for key in collect_keys("", &table, tables) {
            if !known.contains(key.as_str()) {
                reader.problem(&key, "unknown setting");
            }
        }
        if let Some(settings) = Self::read(&mut reader) {
            settings.check(&mut reader);
            let problems = reader.into_problems();
            if problems.is_empty() {
                return Ok(settings);
            }
            return Err(ConfigError { problems });
        }
        Err(ConfigError {
            problems: reader.into_problems(),
        })
    }

    /// Checks between settings, each by the component it concerns.
    fn check(&self, reader: &mut Reader<'_>) {
        if self.simulation.shard.count > 1 && self.simulation.seed.is_none() {
            reader.problem(
                "simulation.shard",
                "replicas must share a seed (--seed): it draws the catalogue they all sell",
            );
        }
        if let Err(message) = self.traffic.profile() {
            reader.problem("traffic", message);
        }
        if let Err(message) = self.api.check() {
            reader.problem("api.token", message);
        }
        for (key, message) in self.shop.check() {
            reader.problem(&key, message);
        }
        if self.sink.kinds.contains(SinkKind::Kafka)
            && let Err(problems) = self.kafka.resolve(&self.schema_registry)
        {
            for (key, message) in problems {
                reader.problem(key, message);
            }
        }
        if self.sink.envelope == crate::cdc::Envelope::Debezium && self.faults.any() {
            reader.problem(
                "faults",
                "faults are injected into the business events, and a change stream cannot hold a \
                 duplicated, late or reordered change of a row: set every fault to 0 with \
                 --envelope debezium",
            );
        }
    }

    /// The ground-truth ledger's directory: `ledger.dir`, or `_ledger` in the output
    /// directory. The replicas of a run share it.
    pub fn ledger_root(&self) -> PathBuf {
        self.ledger
            .dir
            .clone()
            .unwrap_or_else(|| self.file.output_dir.join("_ledger"))
    }

    /// Where this replica writes its ledger: the ledger's directory, or its `shard=I`
    /// directory when the run has several replicas, so that none overwrites another's hours.
    pub fn ledger_dir(&self) -> PathBuf {
        let shard = self.simulation.shard;
        let root = self.ledger_root();
        if shard.count > 1 {
            root.join(format!("shard={}", shard.index))
        } else {
            root
        }
    }

    /// The identity of a run of these settings from `seed` and `start`: the settings a saved
    /// state must match to be resumed.
    pub fn identity(&self, seed: u64, start: Timestamp) -> Identity {
        let mut settings = vec![
            ("simulation.seed".to_owned(), seed.to_string()),
            ("simulation.start".to_owned(), start.to_string()),
        ];
        settings.extend(self.identity_settings());
        Identity { settings }
    }

    /// The README's table of settings: one row per setting, generated from the declarations
    /// and the shipped defaults.
    pub fn table() -> String {
        let defaults = Config::builder()
            .add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml))
            .build()
            .ok();
        let default_of = |key: &str| -> String {
            match defaults.as_ref().map(|d| d.get::<Value>(key)) {
                Some(Ok(value)) => match &value.kind {
                    ValueKind::Table(t) if t.is_empty() => "none".to_owned(),
                    ValueKind::Array(a) if a.is_empty() => "none".to_owned(),
                    ValueKind::Table(_) | ValueKind::Array(_) => {
                        "see `config/default.toml`".to_owned()
                    }
                    _ => format!("`{}`", value.clone().into_string().unwrap_or_default()),
                },
                _ => "unset".to_owned(),
            }
        };
        let mut out = String::from(
            "| setting | flag | default | allowed | meaning |\n|---|---|---|---|---|\n",
        );
        let cell = |text: &str| text.replace('|', "\\|").replace('<', "&lt;");
        for d in Self::declarations() {
            let flag = d.flag.map_or_else(String::new, |f| format!("`{f}`"));
            let default = match default_of(d.key) {
                unset if unset == "unset" && d.value_name == "TABLES" => "none".to_owned(),
                default => default,
            };
            out += &format!(
                "| `{}` | {flag} | {default} | {} | {} |\n",
                d.key,
                cell(&d.allowed),
                cell(&d.help)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Money;
    use crate::sinks::kafka::KafkaTarget;

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
    fn several_sinks_are_given_by_flag_list_or_toml_array_each_once() {
        use crate::sinks::SinkKinds;
        let kinds = |args: &[&str]| load(args, &[]).map(|s| s.sink.kinds);
        assert_eq!(
            kinds(&["--sink", "kafka, file", "--bootstrap-servers", "a:1"])
                .unwrap()
                .names(),
            ["kafka", "file"]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "[sink]\nkinds = [\"file\", \"null\"]\n").unwrap();
        let from_file = kinds(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(from_file.to_string(), "file,null");
        assert!(from_file.contains(SinkKind::Null) && !from_file.contains(SinkKind::Kafka));
        let twice = problems(&["--sink", "file,file"], &[]).join("\n");
        assert!(
            twice.contains("sink.kinds (--sink): `file` is given twice"),
            "{twice}"
        );
        assert_eq!(
            load(&["--sink", "file,null", "--print-config"], &[])
                .unwrap()
                .to_toml()
                .lines()
                .find(|l| l.starts_with("kinds"))
                .unwrap(),
            "kinds = \"file,null\""
        );
        assert_eq!(
            SinkKinds::parse("null").unwrap(),
            SinkKinds::one(SinkKind::Null)
        );
        // Kafka among several still needs its cluster.
        let no_cluster = problems(&["--sink", "file,kafka"], &[]).join("\n");
        assert!(no_cluster.contains("kafka"), "{no_cluster}");
    }

    #[test]
    fn defaults_are_valid() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.simulation.rate.per_hour(), 500.0);
        assert_eq!(s.simulation.shoppers, 10_000);
        assert_eq!(s.sink.kinds, crate::sinks::SinkKinds::one(SinkKind::File));
        assert_eq!(s.file.output_dir, PathBuf::from("./data"));
        assert_eq!(s.simulation.speed, Speed::Factor(1.0));
        assert_eq!(s.simulation.seed, None);
        assert_eq!(s.shop.shipping_fee, Money::from_cents(599));
        assert_eq!(s.ledger_dir(), PathBuf::from("./data/_ledger"));
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
            (
                s.simulation.rate.per_second(),
                s.simulation.shoppers,
                s.simulation.seed
            ),
            (10.0 / 60.0, 7, Some(1))
        );
        let env = [
            ("SIMULATOR__SIMULATION__SHOPPERS", "9"),
            ("SIMULATOR__SIMULATION__SEED", "2"),
        ];
        let s = load(&["--config", f], &env).unwrap();
        assert_eq!((s.simulation.shoppers, s.simulation.seed), (9, Some(2)));
        let s = load(&["--config", f, "--seed", "3"], &env).unwrap();
        assert_eq!((s.simulation.shoppers, s.simulation.seed), (9, Some(3)));
        let s = load(&[], &[("SIMULATOR__FILE__OUTPUT_DIR", "/tmp/x")]).unwrap();
        assert_eq!(s.file.output_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_problem_says_where_its_value_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sim.toml");
        std::fs::write(&file, "[faults]\nlate_fraction = 0.9\n").unwrap();
        let p = problems(
            &["--config", file.to_str().unwrap(), "--shoppers", "0"],
            &[("SIMULATOR__SHOP__TAX_RATE", "2")],
        );
        let joined = p.join("\n");
        for needle in [
            "simulation.shoppers (--shoppers): `0` is not a whole number from 1 to 10000000 (set by --shoppers)",
            "shop.tax_rate: `2` is not a number from 0 to 1 (set by SIMULATOR__SHOP__TAX_RATE)",
            &format!(
                "faults.late_fraction: `0.9` is not a number from 0 to 0.5 (set in {})",
                file.display()
            ),
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        assert_eq!(p.len(), 3, "{joined}");
    }

    #[test]
    fn starts_outside_what_readers_handle_are_refused() {
        for start in [
            "0000-01-01T00:00:00Z",
            "1899-12-31T23:59:59Z",
            "9999-12-31T23:59:59Z",
        ] {
            let p = problems(&["--start", start], &[]);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].contains("outside the instants every reader of the output handles"),
                "{}",
                p[0]
            );
        }
        for start in [EARLIEST_START, LATEST_START, "2026-03-01T12:00:00+01:00"] {
            load(&["--start", start], &[]).unwrap();
        }
    }

    #[test]
    fn bad_rates_are_refused_with_the_flag_named() {
        for (rate, needle) in [
            ("500/x", "`x` is not a unit of time"),
            ("0/h", "must be greater than 0"),
            ("-5/h", "must be greater than 0"),
            ("abc/h", "`abc` is not a number"),
            ("500", "is not a rate"),
            ("inf/s", "`inf` is not a finite number"),
            ("NaN/h", "`NaN` is not a finite number"),
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
            "sink.kinds (--sink): `kafka2` is not a sink: expected one of file, kafka, stdout, null",
            "simulation.raet: unknown setting (set by SIMULATOR__SIMULATION__RAET)",
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
        let origin = format!(" (set in {})", file.display());
        assert!(
            p.contains(&format!("simulation.rat: unknown setting{origin}")),
            "{p:?}"
        );
        assert!(
            p.contains(&format!("extra.x: unknown setting{origin}")),
            "{p:?}"
        );

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
                "--stop-at-present",
            ],
            &[],
        )
        .unwrap();
        assert!(s.simulation.stop_at_present);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("printed.toml");
        std::fs::write(&file, s.to_toml()).unwrap();
        let again = load(&["--config", file.to_str().unwrap()], &[]).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn every_declared_setting_is_in_the_shipped_defaults_or_optional() {
        let defaults = Config::builder()
            .add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml))
            .build()
            .unwrap();
        for d in Settings::declarations() {
            let name = d.key.rsplit('.').next().unwrap();
            let documented = DEFAULT_CONFIG.contains(&format!("{name} ="))
                || DEFAULT_CONFIG.contains(&format!("[[{}]]", d.key));
            assert!(
                defaults.get::<Value>(d.key).is_ok() || documented,
                "{} is neither set nor documented in config/default.toml",
                d.key
            );
            assert!(!d.help.is_empty(), "{} has no documentation", d.key);
        }
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
        assert_eq!(s.shop.currencies[1].code.as_str(), "GBP");
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
             [[shop.currencies]]\ncode = \"USD\"\nrate = 1\nshare = 0.1\n",
        )
        .unwrap();
        let p = problems(&["--config", file.to_str().unwrap()], &[]);
        assert!(
            p.iter().any(|m| m.starts_with(
                "shop.currencies[1].code: `USD` is listed twice (or is shop.currency)"
            )),
            "{p:?}"
        );
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
            s.kafka.resolve(&s.schema_registry).unwrap().target,
            KafkaTarget::Bootstrap("a:9092,b:9092".into())
        );

        let cs = connection_string();
        let s = load(
            &["--sink", "kafka"],
            &[("SIMULATOR__KAFKA__CONNECTION_STRING", &cs)],
        )
        .unwrap();
        let kafka = s.kafka.resolve(&s.schema_registry).unwrap();
        assert_eq!(
            kafka.target.bootstrap_servers(),
            "shop.servicebus.windows.net:9093"
        );
        assert!(!format!("{kafka:?}").contains(SECRET_KEY));
        assert!(!format!("{s:?}").contains(SECRET_KEY));
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
        let kafka = s.kafka.resolve(&s.schema_registry).unwrap();
        assert!(matches!(kafka.target, KafkaTarget::EventHubs(_)));
        assert_eq!(
            kafka.config.properties,
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
            "kafka.connection_string_file: cannot read an Event Hubs connection string from `/nonexistent/cs`",
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

    #[test]
    fn the_readme_lists_every_setting_as_declared() {
        let readme = include_str!("../README.md");
        let begin = "<!-- settings:begin -->\n";
        let end = "<!-- settings:end -->";
        let at = readme.find(begin).expect("the README has a settings table") + begin.len();
        let table = &readme[at..at + readme[at..].find(end).expect("the table ends")];
        assert_eq!(
            table,
            Settings::table(),
            "README.md's settings table is out of date: replace it with the output of \
             `cargo test --lib config -- --ignored --nocapture print_settings_table`"
        );
    }

    #[test]
    #[ignore = "prints the README's settings table"]
    fn print_settings_table() {
        print!("{}", Settings::table());
    }
}
