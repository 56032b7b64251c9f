//! The closed sets of the model: topics, event types, order and payment statuses, payment
//! methods and sales channels. Each is an enum whose Avro and label name is declared once,
//! beside its variant, by [`named!`]; lookups go by index, never by scanning names.

use std::fmt;

/// Declares a fieldless enum whose variants have one name each (the text written in Avro
/// records, metric labels and configuration files), with `ALL` in declaration order, a dense
/// `index` that follows it, `as_str`, `Display`, `FromStr`, and serde as the name.
#[macro_export]
macro_rules! named {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order (the order of [`Self::index`]).
            pub const ALL: [Self; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The name, as written in records, labels and settings.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }

            /// The position in [`Self::ALL`], for dense per-value arrays.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Every name, separated by commas, for messages.
            pub fn names() -> String {
                Self::ALL.map(Self::as_str).join(", ")
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| $crate::model::UnknownName {
                        given: text.to_owned(),
                        expected: Self::names(),
                    })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// A name that is not one of a closed set's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not one of {expected}")]
pub struct UnknownName {
    pub given: String,
    pub expected: String,
}

named! {
    /// The four topics, one per entity, in the order reference data must appear (a product
    /// before any order names it, a customer before its orders, an order before its payments).
    pub enum Topic {
        Products = "products",
        Customers = "customers",
        Orders = "orders",
        Payments = "payments",
    }
}

/// A value per topic, indexed by [`Topic::index`].
pub type PerTopic<T> = [T; Topic::COUNT];

/// Per-topic event counts.
pub type TopicCounts = PerTopic<u64>;

/// The total of per-topic counts.
pub fn total(counts: &TopicCounts) -> u64 {
    counts.iter().sum()
}

/// Formats per-topic counts as `products=10 customers=3 ...`.
pub fn describe(counts: &TopicCounts) -> String {
    Topic::ALL
        .iter()
        .map(|t| format!("{t}={}", counts[t.index()]))
        .collect::<Vec<_>>()
        .join(" ")
}

named! {
    /// What happened: the `event_type` of every record.
    pub enum EventType {
        ProductPublished = "product_published",
        ProductRepriced = "product_repriced",
        ProductDiscontinued = "product_discontinued",
        CustomerSignedUp = "customer_signed_up",
        CustomerUpdated = "customer_updated",
        CustomerDeleted = "customer_deleted",
        OrderPlaced = "order_placed",
        OrderCancelled = "order_cancelled",
        OrderShipped = "order_shipped",
        OrderDelivered = "order_delivered",
        OrderReturned = "order_returned",
        PaymentAuthorized = "payment_authorized",
        PaymentCaptured = "payment_captured",
        PaymentDeclined = "payment_declined",
        PaymentRefunded = "payment_refunded",
    }
}

impl EventType {
    /// The topic events of this type are published on.
    pub const fn topic(self) -> Topic {
        match self {
            Self::ProductPublished | Self::ProductRepriced | Self::ProductDiscontinued => {
                Topic::Products
            }
            Self::CustomerSignedUp | Self::CustomerUpdated | Self::CustomerDeleted => {
                Topic::Customers
            }
            Self::OrderPlaced
            | Self::OrderCancelled
            | Self::OrderShipped
            | Self::OrderDelivered
            | Self::OrderReturned => Topic::Orders,
            Self::PaymentAuthorized
            | Self::PaymentCaptured
            | Self::PaymentDeclined
            | Self::PaymentRefunded => Topic::Payments,
        }
    }
}

named! {
    /// An order's status, as its latest event leaves it.
    pub enum OrderStatus {
        Placed = "placed",
        Shipped = "shipped",
        Delivered = "delivered",
        Returned = "returned",
        Cancelled = "cancelled",
    }
}

impl OrderStatus {
    /// The event that moves an order into this status.
    pub const fn event_type(self) -> EventType {
        match self {
            Self::Placed => EventType::OrderPlaced,
            Self::Shipped => EventType::OrderShipped,
            Self::Delivered => EventType::OrderDelivered,
            Self::Returned => EventType::OrderReturned,
            Self::Cancelled => EventType::OrderCancelled,
        }
    }
}

named! {
    /// A payment attempt's status.
    pub enum PaymentStatus {
        Authorized = "authorized",
        Declined = "declined",
        Captured = "captured",
        Refunded = "refunded",
    }
}

impl PaymentStatus {
    /// The event that moves a payment into this status.
    pub const fn event_type(self) -> EventType {
        match self {
            Self::Authorized => EventType::PaymentAuthorized,
            Self::Declined => EventType::PaymentDeclined,
            Self::Captured => EventType::PaymentCaptured,
            Self::Refunded => EventType::PaymentRefunded,
        }
    }
}

named! {
    /// How a customer pays.
    pub enum PaymentMethod {
        CreditCard = "credit_card",
        DebitCard = "debit_card",
        Paypal = "paypal",
        GiftCard = "gift_card",
    }
}

named! {
    /// Where a customer signed up or placed an order.
    pub enum Channel {
        Web = "web",
        MobileApp = "mobile_app",
        CallCenter = "call_center",
    }
}

/// An ISO 4217 currency code: three capital letters, held inline so that every event can
/// carry one without an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    /// The US dollar, the shop's currency by default.
    pub const USD: Self = Self::from_ascii(b"USD");

    /// The code of three ASCII capital letters; anything else does not compile in a constant.
    pub const fn from_ascii(bytes: &[u8; 3]) -> Self {
        assert!(
            bytes[0].is_ascii_uppercase()
                && bytes[1].is_ascii_uppercase()
                && bytes[2].is_ascii_uppercase()
        );
        Self(*bytes)
    }

    /// The code of `text`, if it is three ASCII capital letters.
    pub fn new(text: &str) -> Option<Self> {
        let bytes: [u8; 3] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_uppercase)
            .then_some(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("three ASCII letters")
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CurrencyCode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::new(text)
            .ok_or_else(|| format!("`{text}` is not an ISO 4217 currency code like USD or EUR"))
    }
}

impl PartialEq<&str> for CurrencyCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for CurrencyCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CurrencyCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_follow_declaration() {
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
        }
        for (i, t) in Topic::ALL.into_iter().enumerate() {
            assert_eq!(t.index(), i);
        }
        let mut sorted = Topic::ALL;
        sorted.sort();
        assert_eq!(sorted, Topic::ALL, "the derived order is the index order");
        assert_eq!(
            "shiped".parse::<OrderStatus>().unwrap_err().to_string(),
            "`shiped` is not one of placed, shipped, delivered, returned, cancelled"
        );
        for status in OrderStatus::ALL {
            assert_eq!(status.event_type().as_str(), format!("order_{status}"));
        }
        for status in PaymentStatus::ALL {
            assert_eq!(status.event_type().as_str(), format!("payment_{status}"));
        }
        assert_eq!(CurrencyCode::new("EUR").unwrap().as_str(), "EUR");
        assert!(CurrencyCode::new("eur").is_none() && CurrencyCode::new("EURO").is_none());
    }
}
