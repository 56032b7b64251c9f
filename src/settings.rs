//! How settings are declared, read and printed back: the machinery under [`crate::config`].
//!
//! A component declares its section of the configuration once, with [`section!`]: each
//! setting's field, type, parser (which says what is allowed and how to print the value back),
//! documentation, and optionally its command-line flag and whether it is part of the run's
//! identity. From that one declaration come the command line, the reading of every layer with
//! all problems reported together (each naming the setting, its flag, the value given and
//! where it came from), the printed configuration and the README's settings table.
//!
//! Parsers read a layered [`config::Value`]: text for most settings (a number in a TOML file
//! reads as its text), a table or an array of tables for the few structured ones.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use config::{Value, ValueKind};

/// Problems with one value: each is the suffix of the key at fault (empty for the setting
/// itself, `[0].code` or `.orders` inside a structured one) and a message.
pub type Invalid = Vec<(String, String)>;

fn invalid(message: impl Into<String>) -> Invalid {
    vec![(String::new(), message.into())]
}

/// How a value prints back in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Printed {
    /// A TOML value.
    Value(String),
    /// No value: printed as a comment saying so.
    Unset,
    /// Not printed (a secret): a comment says what can be said.
    Comment(String),
}

impl Printed {
    /// The value as a run's identity records it: a string without its quotes.
    pub fn as_identity(self) -> String {
        match self {
            Printed::Value(v) => match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(text) if !text.contains('"') => text.to_owned(),
                _ => v,
            },
            Printed::Unset => "unset".to_owned(),
            Printed::Comment(c) => c,
        }
    }
}

/// What a parser tells about the values it takes, independently of their type.
pub trait Describe {
    /// The placeholder of the flag's value in `--help`, like `N/UNIT`.
    fn value_name(&self) -> &'static str {
        "VALUE"
    }
    /// What is allowed, in words.
    fn allowed(&self) -> String;
    /// A flag without a value: the setting is a boolean that the flag turns on.
    fn is_switch(&self) -> bool {
        false
    }
    /// The value is a table whose keys belong to the parser, not to the settings.
    fn is_table(&self) -> bool {
        false
    }
}

/// Reads a setting's value and prints it back.
pub trait Parser: Describe {
    type Value;
    /// The value when no layer sets it; `None` makes the setting required.
    fn absent(&self) -> Option<Self::Value> {
        None
    }
    fn parse(&self, value: &Value) -> Result<Self::Value, Invalid>;
    fn print(&self, value: &Self::Value) -> Printed;
}

/// The text of a scalar value, or why it is not one.
pub fn text_of(value: &Value) -> Result<String, Invalid> {
    match &value.kind {
        ValueKind::Table(_) | ValueKind::Array(_) => {
            Err(invalid("expected a single value, not a table or a list"))
        }
        _ => value
            .clone()
            .into_string()
            .map_err(|e| invalid(format!("expected a single value: {e}"))),
    }
}

/// Quotes text as a TOML string.
pub fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// Whether `name` can stand in a Kafka topic's name: 1 to `max` letters, digits, `.`, `_` or
/// `-`.
pub fn is_topic_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

type ParseFn<T> = Box<dyn Fn(&str) -> Result<T, String>>;
type PrintFn<T> = Box<dyn Fn(&T) -> String>;

/// A parser of one scalar value, read as text.
pub struct Text<T> {
    value_name: &'static str,
    allowed: String,
    parse: ParseFn<T>,
    print: PrintFn<T>,
    switch: bool,
}

impl<T> Text<T> {
    /// A parser from functions: `parse` explains what is wrong in its error, `print` gives
    /// the TOML value.
    pub fn new(
        value_name: &'static str,
        allowed: impl Into<String>,
        parse: impl Fn(&str) -> Result<T, String> + 'static,
        print: impl Fn(&T) -> String + 'static,
    ) -> Self {
        Self {
            value_name,
            allowed: allowed.into(),
            parse: Box::new(parse),
            print: Box::new(print),
            switch: false,
        }
    }

    /// The same text, read into another type.
    pub fn map<U: 'static>(
        self,
        into: impl Fn(T) -> U + 'static,
        from: impl Fn(&U) -> T + 'static,
    ) -> Text<U>
    where
        T: 'static,
    {
        let (parse, print) = (self.parse, self.print);
        Text {
            value_name: self.value_name,
            allowed: self.allowed,
            parse: Box::new(move |s| parse(s).map(&into)),
            print: Box::new(move |u| print(&from(u))),
            switch: self.switch,
        }
    }
}

impl<T> Describe for Text<T> {
    fn value_name(&self) -> &'static str {
        self.value_name
    }
    fn allowed(&self) -> String {
        self.allowed.clone()
    }
    fn is_switch(&self) -> bool {
        self.switch
    }
}

impl<T> Parser for Text<T> {
    type Value = T;
    fn parse(&self, value: &Value) -> Result<T, Invalid> {
        (self.parse)(&text_of(value)?).map_err(invalid)
    }
    fn print(&self, value: &T) -> Printed {
        Printed::Value((self.print)(value))
    }
}

/// Any type with `FromStr` and `Display`: its error explains, its text prints back quoted.
pub fn parsed<T>(value_name: &'static str, allowed: impl Into<String>) -> Text<T>
where
    T: FromStr + fmt::Display + 'static,
    T::Err: fmt::Display,
{
    Text::new(
        value_name,
        allowed,
        |s| s.trim().parse::<T>().map_err(|e| e.to_string()),
        |v| quoted(&v.to_string()),
    )
}

/// One of a closed set of names (an enum declared with [`crate::named!`]); `noun` says what
/// a value is, as in "`x` is not a sink".
pub fn one_of<T>(value_name: &'static str, noun: &'static str, names: String) -> Text<T>
where
    T: FromStr + fmt::Display + 'static,
{
    let expected = names.clone();
    Text::new(
        value_name,
        format!("one of {names}"),
        move |s| {
            s.trim()
                .parse::<T>()
                .map_err(|_| format!("`{s}` is not {noun}: expected one of {expected}"))
        },
        |v| quoted(&v.to_string()),
    )
}

/// A whole number from `min` to `max`.
pub fn count(min: u64, max: u64) -> Text<u64> {
    Text::new(
        "N",
        format!("a whole number from {min} to {max}"),
        move |s| match s.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("`{s}` is not a whole number from {min} to {max}")),
        },
        u64::to_string,
    )
}

/// A number from `min` to `max`.
pub fn number(min: f64, max: f64) -> Text<f64> {
    Text::new(
        "X",
        format!("a number from {min} to {max}"),
        move |s| parse_number(s, min, max),
        |x| format!("{x:?}"),
    )
}

/// A number from `min` to `max`, or the message saying it is not.
pub fn parse_number(text: &str, min: f64, max: f64) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(x),
        _ => Err(format!("`{text}` is not a number from {min} to {max}")),
    }
}

/// `true` or `false`; on the command line, a flag that sets it.
pub fn boolean() -> Text<bool> {
    let mut text = Text::new(
        "BOOL",
        "true or false",
        |s| match s.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("`{s}` is not true or false")),
        },
        bool::to_string,
    );
    text.switch = true;
    text
}

/// A duration like 90s, 15m, 24h or 7days, positive, at most 100 years, at least `min`.
pub fn duration(min: Duration) -> Text<Duration> {
    let least = format_duration(min);
    let allowed = if min > Duration::from_micros(1) {
        format!("a duration of at least {least}, like 90s, 15m, 24h or 7days")
    } else {
        "a positive duration like 90s, 15m, 24h or 7days".to_owned()
    };
    Text::new(
        "DURATION",
        allowed,
        move |s| {
            let d = parse_duration(s)?;
            if d < min {
                return Err(format!("`{s}` is too short: at least {least}"));
            }
            Ok(d)
        },
        |d| quoted(&format_duration(*d)),
    )
}

/// A duration in its largest whole unit, as people write it: `365d`, `90m`, `10s`, `250ms`
/// (a mixture only when no single unit is whole, like `1h 30m 5s`).
pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    for (unit, size) in [
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if micros >= size && micros.is_multiple_of(size) {
            return format!("{}{unit}", micros / size);
        }
    }
    humantime::format_duration(duration).to_string()
}

/// A positive duration of at most 100 years, or the message saying it is not.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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

/// A path, not empty.
pub fn path() -> Text<PathBuf> {
    Text::new(
        "DIR",
        "a path",
        |s| {
            if s.trim().is_empty() {
                Err("the path must not be empty".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        },
        |p| quoted(&p.display().to_string()),
    )
}

/// A value that may be left unset.
pub struct Optional<P>(pub P);

impl<P: Describe> Describe for Optional<P> {
    fn value_name(&self) -> &'static str {
        self.0.value_name()
    }
    fn allowed(&self) -> String {
        format!("{}, or unset", self.0.allowed())
    }
    fn is_switch(&self) -> bool {
        self.0.is_switch()
    }
    fn is_table(&self) -> bool {
        self.0.is_table()
    }
}

impl<P: Parser> Parser for Optional<P> {
    type Value = Option<P::Value>;
    fn absent(&self) -> Option<Self::Value> {
        Some(None)
    }
    fn parse(&self, value: &Value) -> Result<Self::Value, Invalid> {
        self.0.parse(value).map(Some)
    }
    fn print(&self, value: &Self::Value) -> Printed {
        value.as_ref().map_or(Printed::Unset, |v| self.0.print(v))
    }
}

/// A value that may be left unset.
pub fn optional<P: Parser>(parser: P) -> Optional<P> {
    Optional(parser)
}

/// A value, or a word that stands for none (like `forever` or `equal`).
pub fn or_word<T: 'static>(word: &'static str, inner: Text<T>) -> Text<Option<T>> {
    let allowed = format!("{}, or `{word}`", inner.allowed);
    let (parse, print) = (inner.parse, inner.print);
    Text {
        value_name: inner.value_name,
        allowed,
        parse: Box::new(move |s| {
            if s.trim() == word {
                Ok(None)
            } else {
                parse(s.trim())
                    .map(Some)
                    .map_err(|e| format!("{e}, nor `{word}`"))
            }
        }),
        print: Box::new(move |v| v.as_ref().map_or_else(|| quoted(word), &print)),
        switch: false,
    }
}

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

/// A secret given inline: never echoed; printed back as a comment that `describe` writes
/// without the value.
pub struct SecretText {
    /// What is allowed, in words.
    pub allowed: &'static str,
    /// What the printed configuration says instead of the value.
    pub describe: fn(&Secret) -> String,
}

impl Describe for SecretText {
    fn value_name(&self) -> &'static str {
        "SECRET"
    }
    fn allowed(&self) -> String {
        self.allowed.to_owned()
    }
}

impl Parser for SecretText {
    type Value = Secret;
    fn parse(&self, value: &Value) -> Result<Secret, Invalid> {
        text_of(value).map(Secret::new)
    }
    fn print(&self, secret: &Secret) -> Printed {
        Printed::Comment((self.describe)(secret))
    }
}

/// A secret read from a file (a mounted secret): the file's path prints, its content never.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub secret: Secret,
}

/// A file holding `what` (like "an Event Hubs connection string"), read once, trimmed.
pub fn secret_file(what: &'static str) -> Text<SecretFile> {
    Text::new(
        "FILE",
        format!("a file holding {what}"),
        move |path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {what} from `{path}`: {e}"))?;
            if text.trim().is_empty() {
                return Err(format!("`{path}` is empty: expected {what}"));
            }
            Ok(SecretFile {
                path: PathBuf::from(path),
                secret: Secret::new(text.trim()),
            })
        },
        |file| quoted(&file.path.display().to_string()),
    )
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The shipped `config/default.toml`.
    Default,
    /// A configuration file given with `--config`.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the shipped default"),
            Origin::File(path) => write!(f, "set in {}", path.display()),
            Origin::Env(name) => write!(f, "set by {name}"),
            Origin::Flag(flag) => write!(f, "set by {flag}"),
        }
    }
}

/// One setting, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The dotted key, like `simulation.rate`.
    pub key: &'static str,
    /// The command-line flag, like `--rate`.
    pub flag: Option<&'static str>,
    /// Its documentation, one paragraph.
    pub help: String,
    pub value_name: &'static str,
    pub allowed: String,
    pub switch: bool,
    pub table: bool,
    /// Part of the run's identity: a saved run resumes only with the same value.
    pub identity: bool,
}

impl Declaration {
    pub fn new(
        key: &'static str,
        parser: &dyn Describe,
        doc: &[&str],
        flag: Option<&'static str>,
        identity: bool,
    ) -> Self {
        let help = doc
            .iter()
            .map(|line| line.trim())
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_owned();
        Self {
            key,
            flag,
            help,
            value_name: parser.value_name(),
            allowed: parser.allowed(),
            switch: parser.is_switch(),
            table: parser.is_table(),
            identity,
        }
    }

    /// The environment variable that sets it.
    pub fn env_var(&self) -> String {
        env_var(self.key)
    }
}

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "SIMULATOR";

/// The environment variable of a dotted key: `SIMULATOR__SECTION__KEY`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting's key, like `simulation.rate`, or the file at fault.
    pub setting: String,
    /// The setting's flag, if it has one.
    pub flag: Option<&'static str>,
    pub message: String,
    /// Where the value at fault came from (none for a missing value).
    pub origin: Option<Origin>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.flag {
            Some(flag) => write!(f, "{} ({flag}): {}", self.setting, self.message)?,
            None => write!(f, "{}: {}", self.setting, self.message)?,
        }
        match &self.origin {
            Some(origin) => write!(f, " ({origin})"),
            None => Ok(()),
        }
    }
}

/// Where each key of the layered configuration came from: the last layer that set it.
#[derive(Debug, Default, Clone)]
pub struct Origins(BTreeMap<String, Origin>);

impl Origins {
    /// Records that `origin` set `key` (later calls win).
    pub fn set(&mut self, key: String, origin: Origin) {
        self.0.insert(key, origin);
    }

    /// Where `key`, or the setting it is part of, or the first key inside it, came from.
    pub fn of(&self, key: &str) -> Option<&Origin> {
        let mut prefix = key;
        loop {
            if let Some(origin) = self.0.get(prefix) {
                return Some(origin);
            }
            match prefix.rfind(['.', '[']) {
                Some(at) => prefix = &prefix[..at],
                None => break,
            }
        }
        self.0
            .range(format!("{key}.")..)
            .take_while(|(k, _)| k.starts_with(&format!("{key}.")))
            .map(|(_, origin)| origin)
            .next()
    }
}

/// Reads declared settings from the layered configuration, collecting every problem.
pub struct Reader<'a> {
    config: &'a config::Config,
    origins: &'a Origins,
    flags: BTreeMap<&'static str, &'static str>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub fn new(
        config: &'a config::Config,
        origins: &'a Origins,
        declarations: &[Declaration],
    ) -> Self {
        Self {
            config,
            origins,
            flags: declarations
                .iter()
                .filter_map(|d| d.flag.map(|flag| (d.key, flag)))
                .collect(),
            problems: Vec::new(),
        }
    }

    /// The setting `key`, parsed; `None` (with the problems recorded) if it is invalid.
    pub fn read<P: Parser>(&mut self, key: &'static str, parser: &P) -> Option<P::Value> {
        let invalid = match self.config.get::<Value>(key) {
            Err(config::ConfigError::NotFound(_)) => match parser.absent() {
                Some(value) => return Some(value),
                None => invalid("missing"),
            },
            Err(e) => invalid(format!("cannot be read: {e}")),
            Ok(value) => match parser.parse(&value) {
                Ok(value) => return Some(value),
                Err(invalid) => invalid,
            },
        };
        for (suffix, message) in invalid {
            self.problem(&format!("{key}{suffix}"), message);
        }
        None
    }

    /// Records a problem with `setting` (a key, or a key and a suffix inside it).
    pub fn problem(&mut self, setting: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            setting: setting.to_owned(),
            flag: self.flags.get(setting).copied(),
            message: message.into(),
            origin: self.origins.of(setting).cloned(),
        });
    }

    /// Every problem recorded.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// Writes the effective configuration as TOML.
#[derive(Debug, Default)]
pub struct Printer {
    out: String,
}

impl Printer {
    /// Starts the section `name`.
    pub fn section(&mut self, name: &str) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        self.out += &format!("[{name}]\n");
    }

    /// Prints one setting of the current section.
    pub fn value(&mut self, name: &str, printed: Printed) {
        match printed {
            Printed::Value(value) => self.out += &format!("{name} = {value}\n"),
            Printed::Unset => self.out += &format!("# {name} is unset\n"),
            Printed::Comment(comment) => self.out += &format!("# {name}: {comment}\n"),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `parser`, as a parser of `T` (which lets the declared field's type drive inference).
pub fn typed<T, P: Parser<Value = T>>(parser: P) -> P {
    parser
}

/// A section of the configuration, declared with [`section!`].
pub trait Section: Sized {
    /// The section's name, like `simulation`.
    const NAME: &'static str;
    /// Every setting of the section, in declaration order.
    fn declarations() -> Vec<Declaration>;
    /// Reads the section; `None` if any of its settings is invalid.
    fn read(reader: &mut Reader<'_>) -> Option<Self>;
    /// Prints the section back.
    fn print(&self, printer: &mut Printer);
    /// The printed values of the settings that are part of the run's identity.
    fn identity(&self) -> Vec<(String, String)>;
}

/// Declares a section of the configuration: a struct of typed settings, each with its parser,
/// its documentation (the doc comment, which is also its `--help`), and optionally its flag
/// and whether it is part of the run's identity:
///
/// ```ignore
/// section! {
///     /// The faults injected.
///     pub struct FaultSettings in "faults" {
///         /// The same event sent a second time.
///         pub duplicate_fraction: f64 = number(0.0, 0.5);
///         /// Orders per unit of time.
///         pub rate: Rate = parsed("N/UNIT", "..."), flag = "--rate", identity = true;
///     }
/// }
/// ```
#[macro_export]
macro_rules! section {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $section:literal {
            $(
                $(#[doc = $doc:literal])*
                $fvis:vis $field:ident : $ty:ty = $parser:expr
                    $(, flag = $flag:literal)? $(, identity = $identity:literal)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $( $(#[doc = $doc])* $fvis $field: $ty, )*
        }

        impl $crate::settings::Section for $name {
            const NAME: &'static str = $section;

            fn declarations() -> Vec<$crate::settings::Declaration> {
                vec![$(
                    $crate::settings::Declaration::new(
                        concat!($section, ".", stringify!($field)),
                        &$crate::settings::typed::<$ty, _>($parser),
                        &[$($doc),*],
                        None $(.or(Some($flag)))?,
                        false $(|| $identity)?,
                    ),
                )*]
            }

            fn read(reader: &mut $crate::settings::Reader<'_>) -> Option<Self> {
                $(
                    let $field = reader.read(
                        concat!($section, ".", stringify!($field)),
                        &$crate::settings::typed::<$ty, _>($parser),
                    );
                )*
                Some(Self { $( $field: $field?, )* })
            }

            fn print(&self, printer: &mut $crate::settings::Printer) {
                printer.section($section);
                $(
                    printer.value(
                        stringify!($field),
                        $crate::settings::Parser::print(
                            &$crate::settings::typed::<$ty, _>($parser),
                            &self.$field,
                        ),
                    );
                )*
            }

            fn identity(&self) -> Vec<(String, String)> {
                let mut identity = Vec::new();
                $(
                    if false $(|| $identity)? {
                        let printed = $crate::settings::Parser::print(
                            &$crate::settings::typed::<$ty, _>($parser),
                            &self.$field,
                        );
                        identity.push((
                            concat!($section, ".", stringify!($field)).to_owned(),
                            printed.as_identity(),
                        ));
                    }
                )*
                identity
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_their_largest_whole_unit_and_parse_back() {
        for (duration, text) in [
            (Duration::from_secs(365 * 86_400), "365d"),
            (Duration::from_secs(90 * 60), "90m"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(3_605), "3605s"),
            (Duration::from_micros(1_500), "1ms 500us"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), duration);
        }
    }

    #[test]
    fn an_origin_is_found_for_a_key_its_setting_or_its_first_part() {
        let mut origins = Origins::default();
        origins.set("shop.currencies".into(), Origin::File("a.toml".into()));
        origins.set(
            "kafka.topics.orders".into(),
            Origin::Env("SIMULATOR__KAFKA__TOPICS__ORDERS".into()),
        );
        origins.set("simulation.rate".into(), Origin::Flag("--rate".into()));
        assert_eq!(
            origins.of("shop.currencies[1].code"),
            Some(&Origin::File("a.toml".into()))
        );
        assert_eq!(
            origins.of("kafka.topics"),
            Some(&Origin::Env("SIMULATOR__KAFKA__TOPICS__ORDERS".into()))
        );
        assert_eq!(
            origins
                .of("simulation.rate")
                .map(ToString::to_string)
                .as_deref(),
            Some("set by --rate")
        );
        assert_eq!(origins.of("simulation.seed"), None);
    }

    #[test]
    fn optional_values_may_be_absent_and_print_as_unset() {
        let parser = optional(count(1, 10));
        assert_eq!(parser.absent(), Some(None));
        assert_eq!(parser.print(&None), Printed::Unset);
        assert_eq!(parser.print(&Some(3)), Printed::Value("3".into()));
        assert_eq!(
            count(1, 10).parse(&Value::from("11")),
            Err(vec![(
                String::new(),
                "`11` is not a whole number from 1 to 10".into()
            )])
        );
        assert_eq!(Printed::Value("\"0/2\"".into()).as_identity(), "0/2");
        assert_eq!(Printed::Value("0.5".into()).as_identity(), "0.5");
    }
}
