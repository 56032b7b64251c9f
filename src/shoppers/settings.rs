//! The sections of the configuration that shape shoppers and the shop they buy from:
//! `traffic` (when and how often shoppers come), `catalogue` and `shop` (what they buy, at
//! what price, in which currency).

use std::collections::BTreeMap;
use std::time::Duration;

use config::{Value, ValueKind};

use crate::model::{
    Catalogue, CurrencyCode, DAYS, HOURS, MAX_MINOR_UNITS, Money, Promotion, Timestamp,
    TrafficProfile,
};
use crate::settings::{
    Describe, Invalid, Parser, Printed, Text, count, duration, number, one_of, or_word,
    parse_number, parsed, quoted,
};

/// Most products in the catalogue.
pub const MAX_PRODUCTS: u64 = 1_000_000;

crate::named! {
    /// How busy the shop is over time.
    pub enum ProfileName {
        /// Daily and weekly curves and promotions.
        Realistic = "realistic",
        /// The same intensity at every instant.
        Flat = "flat",
    }
}

/// An IANA time zone.
fn time_zone() -> Text<chrono_tz::Tz> {
    Text::new(
        "ZONE",
        "an IANA time zone like Europe/Paris or UTC",
        |s| {
            s.trim()
                .parse::<chrono_tz::Tz>()
                .map_err(|_| format!("`{s}` is not an IANA time zone like Europe/Paris or UTC"))
        },
        |zone| quoted(zone.name()),
    )
}

/// `N` non-negative factors separated by spaces or commas, not all 0.
fn curve<const N: usize>(what: &'static str) -> Text<[f64; N]> {
    Text::new(
        "FACTORS",
        format!("{N} factors of 0 or more separated by spaces, one per {what}, not all 0"),
        move |text| {
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
            if curve.iter().any(|f| !f.is_finite() || *f < 0.0) || curve.iter().sum::<f64>() <= 0.0
            {
                return Err("factors must be 0 or more, and not all 0".into());
            }
            Ok(curve)
        },
        |curve| {
            quoted(
                &curve
                    .iter()
                    .map(|f| format!("{f:?}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        },
    )
}

/// An array of tables `[[key]]`, each field as text; `Err` if it is something else.
fn tables_of(value: &Value) -> Result<Vec<BTreeMap<String, String>>, Invalid> {
    let shape = || {
        vec![(
            String::new(),
            "expected [[tables]] of text and numbers".to_owned(),
        )]
    };
    let ValueKind::Array(items) = &value.kind else {
        return Err(shape());
    };
    items
        .iter()
        .map(|item| match &item.kind {
            ValueKind::Table(table) => table
                .iter()
                .map(|(k, v)| {
                    crate::settings::text_of(v)
                        .map(|text| (k.clone(), text))
                        .map_err(|_| shape())
                })
                .collect(),
            _ => Err(shape()),
        })
        .collect()
}

/// Prints an array of tables as TOML: `[{ a = "x", b = 1.0 }, ...]`.
fn print_tables(tables: impl Iterator<Item = Vec<(&'static str, String)>>) -> Printed {
    let items: Vec<String> = tables
        .map(|fields| {
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("{{ {} }}", fields.join(", "))
        })
        .collect();
    Printed::Value(format!("[{}]", items.join(", ")))
}

/// Checks the fields of table `i`: unknown ones, and missing required ones.
fn fields(
    table: &BTreeMap<String, String>,
    i: usize,
    known: &[&str],
    required: &[&str],
    problems: &mut Invalid,
) {
    for unknown in table.keys().filter(|k| !known.contains(&k.as_str())) {
        problems.push((format!("[{i}].{unknown}"), "unknown setting".into()));
    }
    for field in required.iter().filter(|f| !table.contains_key(**f)) {
        problems.push((format!("[{i}].{field}"), "missing".into()));
    }
}

/// `[[traffic.promotions]]`: name, start, end, uplift, and optionally category and discount.
struct Promotions;

impl Describe for Promotions {
    fn value_name(&self) -> &'static str {
        "TABLES"
    }
    fn allowed(&self) -> String {
        "[[traffic.promotions]] tables of name, start, end (RFC 3339), uplift (0.01 to 100), and \
         optionally category and discount (0 to 0.9)"
            .to_owned()
    }
}

impl Parser for Promotions {
    type Value = Vec<Promotion>;

    fn absent(&self) -> Option<Self::Value> {
        Some(Vec::new())
    }

    fn parse(&self, value: &Value) -> Result<Vec<Promotion>, Invalid> {
        let mut problems = Invalid::new();
        let mut promotions = Vec::new();
        for (i, table) in tables_of(value)?.iter().enumerate() {
            let known = ["name", "start", "end", "uplift", "category", "discount"];
            fields(
                table,
                i,
                &known,
                &["name", "start", "end", "uplift"],
                &mut problems,
            );
            let mut problem = |field: &str, message: String| {
                problems.push((format!("[{i}].{field}"), message));
            };
            fn checked<T>(
                result: Result<T, String>,
                field: &str,
                problem: &mut impl FnMut(&str, String),
            ) -> Option<T> {
                result.map_err(|message| problem(field, message)).ok()
            }
            let instant = |text: &String| {
                chrono::DateTime::parse_from_rfc3339(text.trim())
                    .map(|d| Timestamp::from_datetime(d.to_utc()))
                    .map_err(|_| format!("`{text}` is not an RFC 3339 instant"))
            };
            let start = table
                .get("start")
                .and_then(|t| checked(instant(t), "start", &mut problem));
            let end = table
                .get("end")
                .and_then(|t| checked(instant(t), "end", &mut problem));
            let uplift = table
                .get("uplift")
                .and_then(|t| checked(parse_number(t, 0.01, 100.0), "uplift", &mut problem));
            let discount = match table.get("discount") {
                Some(t) => checked(parse_number(t, 0.0, 0.9), "discount", &mut problem),
                None => Some(0.0),
            };
            let category = table.get("category").cloned();
            if let Some(category) = &category
                && !Catalogue::category_names().any(|c| c == category)
            {
                let names: Vec<&str> = Catalogue::category_names().collect();
                problem(
                    "category",
                    format!(
                        "`{category}` is not a category: expected one of {}",
                        names.join(", ")
                    ),
                );
            }
            if let (Some(name), Some(start), Some(end), Some(uplift), Some(discount)) =
                (table.get("name"), start, end, uplift, discount)
            {
                promotions.push(Promotion {
                    name: name.clone(),
                    start,
                    end,
                    uplift,
                    category,
                    discount,
                });
            }
        }
        if problems.is_empty() {
            Ok(promotions)
        } else {
            Err(problems)
        }
    }

    fn print(&self, promotions: &Vec<Promotion>) -> Printed {
        print_tables(promotions.iter().map(|p| {
            let mut fields = vec![
                ("name", quoted(&p.name)),
                ("start", quoted(&p.start.to_string())),
                ("end", quoted(&p.end.to_string())),
                ("uplift", format!("{:?}", p.uplift)),
                ("discount", format!("{:?}", p.discount)),
            ];
            if let Some(category) = &p.category {
                fields.push(("category", quoted(category)));
            }
            fields
        }))
    }
}

crate::section! {
    /// How traffic varies: over time, and between shoppers.
    pub struct TrafficSettings in "traffic" {
        /// Traffic over time: realistic (daily and weekly curves, promotions) or flat.
        pub profile: ProfileName = one_of("PROFILE", "a traffic profile", ProfileName::names()), flag = "--profile";
        /// Time zone of the curves (IANA name).
        pub time_zone: chrono_tz::Tz = time_zone();
        /// Relative intensity by hour of day, 0 to 23, in the shop's time zone.
        pub hourly: [f64; HOURS] = curve::<HOURS>("hour of day 0 to 23");
        /// Relative intensity by day of week, Monday to Sunday.
        pub weekly: [f64; DAYS] = curve::<DAYS>("day of week Monday to Sunday");
        /// How unequal shoppers are: the gamma shape of their activities (lower: a few shop
        /// often and most rarely), or `equal`.
        pub activity_shape: Option<f64> = or_word("equal", number(0.05, 1000.0)), identity = true;
        /// How long a customer keeps coming back, on average (exponential lifetimes), or
        /// `forever`.
        pub customer_lifetime: Option<Duration> =
            or_word("forever", duration(Duration::from_secs(3_600))), identity = true;
        /// Promotions: from start to end, sessions are uplift times as frequent; with a
        /// category, its products are uplift times as likely to be bought and sold at
        /// discount off.
        pub promotions: Vec<Promotion> = Promotions;
    }
}

impl TrafficSettings {
    /// The traffic profile these settings describe; `Err` says what is inconsistent.
    pub fn profile(&self) -> Result<TrafficProfile, String> {
        match self.profile {
            ProfileName::Flat => Ok(TrafficProfile::flat()),
            ProfileName::Realistic => TrafficProfile::new(
                self.time_zone,
                self.hourly,
                self.weekly,
                self.promotions.clone(),
            ),
        }
    }
}

crate::section! {
    /// The products on sale.
    pub struct CatalogueSettings in "catalogue" {
        /// Products published at start.
        pub products: usize = count(1, MAX_PRODUCTS).map(|n| n as usize, |n| *n as u64),
            identity = true;
        /// Zipf exponent of product popularity: 0 is uniform, higher is more skewed.
        pub popularity_exponent: f64 = number(0.0, 10.0), identity = true;
        /// Probability that a product is off its list price for a week.
        pub reprice_probability: f64 = number(0.0, 1.0), identity = true;
        /// Products discontinued per product and year (at a weekly review; a new product of
        /// its category takes its place).
        pub discontinue_rate: f64 = number(0.0, 52.0), identity = true;
    }
}

crate::section! {
    /// How customers change after they sign up: each a yearly rate per customer.
    pub struct CustomerSettings in "customers" {
        /// Moves to a new address, per customer and year.
        pub move_rate: f64 = number(0.0, 52.0), identity = true;
        /// Changes of email address or phone number, per customer and year.
        pub contact_change_rate: f64 = number(0.0, 52.0), identity = true;
        /// Changes of mind about marketing messages, per customer and year.
        pub consent_change_rate: f64 = number(0.0, 52.0), identity = true;
        /// Requests to be erased (the customer is deleted and places no more orders), per
        /// customer and year.
        pub erasure_rate: f64 = number(0.0, 52.0), identity = true;
    }
}

/// An amount from 0 to a thousandth of the largest amount.
fn money() -> Text<Money> {
    let max = Money::from_cents(MAX_MINOR_UNITS / 1000);
    Text::new(
        "AMOUNT",
        format!("an amount from 0 to {max}, like 5.99"),
        move |s| {
            let m: Money = s
                .trim()
                .parse()
                .map_err(|e: crate::model::ParseMoneyError| e.to_string())?;
            if m.cents() < 0 || m > max {
                Err(format!("`{s}` must be between 0 and {max}"))
            } else {
                Ok(m)
            }
        },
        |m| quoted(&m.to_string()),
    )
}

/// A currency some customers pay in, besides the shop's own.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrencySettings {
    pub code: CurrencyCode,
    /// Units of this currency per unit of the shop's currency.
    pub rate: f64,
    /// Share of customers who pay in it.
    pub share: f64,
}

/// `[[shop.currencies]]`: code, rate and share; codes distinct, shares adding up to less
/// than 1.
struct Currencies;

impl Describe for Currencies {
    fn value_name(&self) -> &'static str {
        "TABLES"
    }
    fn allowed(&self) -> String {
        "[[shop.currencies]] tables of code (ISO 4217), rate (above 0, at most 10000) and share \
         (above 0; shares below 1 in all)"
            .to_owned()
    }
}

impl Parser for Currencies {
    type Value = Vec<CurrencySettings>;

    fn absent(&self) -> Option<Self::Value> {
        Some(Vec::new())
    }

    fn parse(&self, value: &Value) -> Result<Vec<CurrencySettings>, Invalid> {
        let mut problems = Invalid::new();
        let mut currencies: Vec<CurrencySettings> = Vec::new();
        for (i, table) in tables_of(value)?.iter().enumerate() {
            fields(table, i, &["code", "rate", "share"], &[], &mut problems);
            let mut problem = |field: &str, message: String| {
                problems.push((format!("[{i}].{field}"), message));
            };
            let code = match table.get("code").map(|c| c.trim()) {
                None => {
                    problem("code", "missing".to_owned());
                    None
                }
                Some(text) => match text.parse::<CurrencyCode>() {
                    Ok(code) if currencies.iter().any(|o| o.code == code) => {
                        problem(
                            "code",
                            format!("`{code}` is listed twice (or is shop.currency)"),
                        );
                        None
                    }
                    Ok(code) => Some(code),
                    Err(_) => {
                        problem(
                            "code",
                            format!("`{text}` is not an ISO 4217 currency code like EUR"),
                        );
                        None
                    }
                },
            };
            let mut positive = |field: &str, max: f64| match table.get(field) {
                None => {
                    problem(field, "missing".to_owned());
                    None
                }
                Some(text) => match parse_number(text, 0.0, max) {
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
            let rate = positive("rate", 10_000.0);
            let share = positive("share", 1.0);
            if let (Some(code), Some(rate), Some(share)) = (code, rate, share) {
                currencies.push(CurrencySettings { code, rate, share });
            }
        }
        let total: f64 = currencies.iter().map(|c| c.share).sum();
        if total >= 1.0 {
            problems.push((
                String::new(),
                format!(
                    "the shares add up to {total}: they must leave some customers to shop.currency"
                ),
            ));
        }
        if problems.is_empty() {
            Ok(currencies)
        } else {
            Err(problems)
        }
    }

    fn print(&self, currencies: &Vec<CurrencySettings>) -> Printed {
        print_tables(currencies.iter().map(|c| {
            vec![
                ("code", quoted(c.code.as_str())),
                ("rate", format!("{:?}", c.rate)),
                ("share", format!("{:?}", c.share)),
            ]
        }))
    }
}

crate::section! {
    /// The shop's commercial rules.
    pub struct ShopSettings in "shop" {
        /// ISO 4217 code of every amount.
        pub currency: CurrencyCode = parsed("CODE", "an ISO 4217 code like USD or EUR"),
            identity = true;
        /// Sales tax on the discounted subtotal, as a fraction.
        pub tax_rate: f64 = number(0.0, 1.0);
        /// Flat shipping fee, charged below the free-shipping threshold.
        pub shipping_fee: Money = money();
        /// Orders from this amount ship free.
        pub free_shipping_threshold: Money = money();
        /// Share of orders placed with a coupon (5 to 20% off).
        pub discount_probability: f64 = number(0.0, 1.0);
        /// Other currencies, each paid in by a share of customers, at prices converted at its
        /// rate.
        pub currencies: Vec<CurrencySettings> = Currencies, identity = true;
    }
}

impl ShopSettings {
    /// Problems between the shop's settings: another currency that is the shop's own.
    pub fn check(&self) -> Vec<(String, String)> {
        self.currencies
            .iter()
            .enumerate()
            .filter(|(_, c)| c.code == self.currency)
            .map(|(i, c)| {
                (
                    format!("shop.currencies[{i}].code"),
                    format!("`{}` is listed twice (or is shop.currency)", c.code),
                )
            })
            .collect()
    }
}
