//! One shopper's behaviour as a pure step function over `(state, now, rng)`.
//!
//! A shopper's sessions arrive as a non-homogeneous Poisson process whose intensity is the
//! shopper's activity times the shop's traffic shape ([`TrafficProfile`]), sampled exactly by
//! thinning. Shoppers differ: their activities follow a gamma distribution of mean 1, so a few
//! shop often and most rarely. At its first session the shopper signs up as a customer; every
//! session places one order, then its payment flow plays out as follow-ups kept in a small
//! time-ordered queue: authorisation a few seconds later, then capture, or a decline and perhaps
//! a retry with another attempt.
//!
//! Customers do not stay forever. A shopper is a *slot* in the population, held by one
//! (prospective) customer at a time for an exponential lifetime of the configured mean, counted
//! from when it took the slot; then a new prospective customer, with a new id and a new
//! activity, takes the slot at that instant (and signs up at its first session), while the
//! orders of the one who left play out to their end. The slot's sessions are a Poisson process
//! throughout, of the old customer's intensity until the departure and the new one's after;
//! since departures do not depend on activity, the population's mean activity stays 1 and the
//! rate does not depend on churn. (A prospect who leaves before its first session never signs
//! up: its id is not used.)
//!
//! Nothing here reads a clock or touches a task: [`Shopper::step`] is handed the instant it runs
//! at and returns the events of that instant, and [`Shopper::next_wake`] says when it next has
//! something to do. The actor around it ([`super::run_shopper`]) only sleeps until then.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use fake::Fake;
use fake::faker::address::en::{
    BuildingNumber, CityName, StateAbbr, StreetName, StreetSuffix, ZipCode,
};
use fake::faker::internet::en::FreeEmailProvider;
use fake::faker::name::en::{FirstName, LastName};
use fake::faker::phone_number::en::PhoneNumber;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1, Gamma, Geometric, LogNormal, Poisson};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::model::{
    Catalogue, Channel, CustomerEvent, CustomerId, CustomerProfile, Event, EventType, ID_STRIDE,
    MAX_CUSTOMER_ID, MAX_ORDERS_PER_CUSTOMER, MAX_PAYMENT_ATTEMPTS, Money, OrderEvent, OrderId,
    OrderLine, OrderStatus, OrderTotals, PaymentEvent, PaymentId, PaymentMethod, PaymentStatus,
    Product, RowTimes, ShopRules, Timestamp, TrafficProfile, mix, new_event_id, order_id,
    payment_id, time,
};

/// Mean delay from an order (or a retry decision) to the authorisation answer, in seconds.
const MEAN_AUTHORIZATION_DELAY_SECS: f64 = 4.0;
/// Mean delay before a declined customer tries again, in seconds.
const MEAN_RETRY_DELAY_SECS: f64 = 180.0;
/// Median delay from authorisation to capture, in seconds (log-normal, sigma 1).
const MEDIAN_CAPTURE_DELAY_SECS: f64 = 1_200.0;
/// Probability that a declined customer tries again (while attempts remain).
const RETRY_PROBABILITY: f64 = 0.7;
/// Median delay from capture to shipping, in seconds (log-normal, sigma 0.7).
const MEDIAN_SHIPPING_DELAY_SECS: f64 = 18.0 * 3_600.0;
/// Median delay from shipping to delivery, in seconds (log-normal, sigma 0.4).
const MEDIAN_DELIVERY_DELAY_SECS: f64 = 2.5 * 86_400.0;
/// Probability that a paid order is cancelled before it ships (and refunded).
const CANCEL_PROBABILITY: f64 = 0.03;
/// Mean delay from the last declined attempt to the order's cancellation, in seconds.
const MEAN_UNPAID_CANCEL_DELAY_SECS: f64 = 1_800.0;
/// Probability that a delivered order is returned (and refunded), within the return window.
const RETURN_PROBABILITY: f64 = 0.06;
/// Returns arrive uniformly within this many days of delivery.
const RETURN_WINDOW_DAYS: f64 = 30.0;
/// Most lines in one order.
const MAX_LINES: usize = 10;
/// Most units of one product in one line.
const MAX_QUANTITY: i32 = 10;
/// Discount rates offered by coupons.
const COUPON_RATES: [f64; 4] = [0.05, 0.10, 0.15, 0.20];

/// Sales channels with their shares of orders and sign-ups, in the order of [`Channel::ALL`].
pub const CHANNELS: [(Channel, f64); Channel::COUNT] = [
    (Channel::Web, 0.55),
    (Channel::MobileApp, 0.40),
    (Channel::CallCenter, 0.05),
];

/// Payment methods: share of customers who prefer it, decline probability, decline reasons; in
/// the order of [`PaymentMethod::ALL`].
pub const PAYMENT_METHODS: [(PaymentMethod, f64, f64, &[&str]); PaymentMethod::COUNT] = [
    (
        PaymentMethod::CreditCard,
        0.45,
        0.07,
        &[
            "insufficient_funds",
            "card_declined",
            "expired_card",
            "suspected_fraud",
        ],
    ),
    (
        PaymentMethod::DebitCard,
        0.25,
        0.05,
        &["insufficient_funds", "card_declined", "expired_card"],
    ),
    (
        PaymentMethod::Paypal,
        0.22,
        0.03,
        &["account_restricted", "funding_source_declined"],
    ),
    (
        PaymentMethod::GiftCard,
        0.08,
        0.02,
        &["insufficient_balance"],
    ),
];

/// A currency some customers pay in besides the shop's own: its prices are the catalogue's
/// converted at `rate` (to the cent), its shipping rules are in it.
#[derive(Debug, Clone)]
pub struct Currency {
    pub rules: ShopRules,
    /// Units of this currency per unit of the shop's.
    pub rate: f64,
    /// Share of customers who pay in it.
    pub share: f64,
}

/// How often a customer changes something, each a yearly rate per customer (a Poisson process
/// of each kind from sign-up on).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CustomerChanges {
    /// Moves to a new address.
    pub moves: f64,
    /// Changes of email address or phone number (half each).
    pub contact_changes: f64,
    /// Changes of mind about marketing messages.
    pub consent_changes: f64,
    /// Requests to be erased (the right to erasure): the customer is deleted and leaves.
    pub erasures: f64,
}

/// Microseconds in a year of 365.25 days.
const MICROS_PER_YEAR: f64 = 365.25 * 86_400.0 * 1e6;

impl CustomerChanges {
    /// Changes of any kind per microsecond.
    fn per_micro(&self) -> f64 {
        (self.moves + self.contact_changes + self.consent_changes + self.erasures) / MICROS_PER_YEAR
    }
}

/// What a customer changes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Move,
    Email,
    Phone,
    Consent,
    Erasure,
}

/// What all shoppers share: the catalogue and the shop's rules.
#[derive(Debug)]
pub struct ShopContext {
    pub catalogue: Catalogue,
    /// The rules in the shop's own currency, the catalogue's.
    pub rules: ShopRules,
    /// Other currencies customers pay in (none unless configured).
    pub currencies: Vec<Currency>,
    /// Mean time between two sessions of a shopper of average activity, in microseconds.
    pub mean_session_gap_micros: f64,
    /// How the intensity varies over time.
    pub traffic: TrafficProfile,
    /// Shape of the gamma distribution of shoppers' activities (mean 1); `None` makes every
    /// shopper equally active.
    pub activity_shape: Option<f64>,
    /// Divides every raw activity so that their mean over the population is exactly 1.
    pub activity_mean: f64,
    /// Probability that an order uses a coupon.
    pub discount_probability: f64,
    /// The run's seed, from which every new customer's generator is derived.
    pub seed: u64,
    /// Mean time a customer keeps coming back, in microseconds; `None`: forever.
    pub mean_lifetime_micros: Option<f64>,
    /// How far apart the customer ids of one slot are: the next customer of a slot has the id
    /// of the previous one plus this (the number of slots of every replica together).
    pub customer_id_stride: i64,
    /// How often customers change their details or ask to be erased.
    pub changes: CustomerChanges,
}

/// Something a shopper has to do later, about one of its orders (whose customer may have left
/// since: the order id names it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct FollowUp {
    #[serde(with = "time::micros")]
    at: Timestamp,
    order: OrderId,
    totals: OrderTotals,
    channel: u8,
    /// The payment method of the order's customer.
    method: u8,
    /// The order's currency: 0 for the shop's, i for `currencies[i - 1]`.
    currency: u8,
    /// When the order was placed, and when its status last changed (its row in the shop's
    /// `orders` table, to the millisecond).
    #[serde(with = "time::micros")]
    placed: Timestamp,
    #[serde(with = "time::micros")]
    order_changed: Timestamp,
    action: Action,
}

/// A payment attempt that went through: what a later capture or refund refers to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Paid {
    payment: PaymentId,
    attempt: i32,
    method: u8,
    /// When the attempt was authorised, and when its status last changed (its row in the
    /// shop's `payments` table, to the millisecond).
    #[serde(with = "time::micros")]
    created: Timestamp,
    #[serde(with = "time::micros")]
    changed: Timestamp,
}

/// The next step of an order. The valid paths: placed, then authorised (after declines and
/// retries, or cancelled unpaid), captured, then shipped (or cancelled and refunded),
/// delivered, and perhaps returned and refunded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Action {
    /// Ask for authorisation: payment attempt number `attempt`.
    Authorize { attempt: i32 },
    /// Capture an authorised payment.
    Capture(Paid),
    /// Ship a paid order.
    Ship(Paid),
    /// Deliver a shipped order.
    Deliver(Paid),
    /// The customer sends a delivered order back; it is refunded.
    Return(Paid),
    /// Cancel the order before it ships: refunded if it was paid.
    Cancel(Option<Paid>),
}

/// One simulated shopper: 160 bytes while idle. Its whole state serialises, so a
/// run can be saved and resumed exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shopper {
    id: CustomerId,
    /// Mean gap between sessions at a shape of 1, for this shopper's activity (microseconds).
    mean_gap: f64,
    rng: Pcg64Mcg,
    #[serde(with = "time::micros")]
    next_session: Timestamp,
    /// The customer, once signed up.
    customer: Option<Customer>,
    /// When the customer stops coming back (the end of time if never).
    #[serde(with = "time::micros")]
    leaves_at: Timestamp,
    orders: u32,
    preferred_method: u8,
    /// The customer's currency: 0 for the shop's, i for `currencies[i - 1]`.
    currency: u8,
    /// Pending follow-ups, in the order they fall due.
    pending: FollowUps,
}

/// A signed-up customer: when and where they signed up, how often each part of their profile
/// changed since (the profile itself is drawn again from these, see [`profile`]), and when
/// they next change something.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Customer {
    #[serde(with = "time::micros")]
    signed_up_at: Timestamp,
    channel: Channel,
    versions: Versions,
    /// When the current version began (the sign-up, or the latest change), to the millisecond.
    #[serde(with = "time::micros")]
    changed_at: Timestamp,
    /// The end of time when the customer changes nothing more.
    #[serde(with = "time::micros")]
    next_change: Timestamp,
}

/// How many times each part of a customer's profile changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Versions {
    pub address: u16,
    pub email: u16,
    pub phone: u16,
    /// Changes of mind about marketing: the consent is the first one's opposite when odd.
    pub consent: u16,
}

/// The parts of a profile, each drawn from its own generator.
const NAME: u64 = 1;
const EMAIL: u64 = 2;
const PHONE: u64 = 3;
const ADDRESS: u64 = 4;
const CONSENT: u64 = 5;

/// The generator of `part` of customer `id`'s profile at `version`.
fn part_rng(seed: u64, id: CustomerId, part: u64, version: u16) -> Pcg64Mcg {
    let lo = mix(
        mix(mix(seed, 0xC057_0000 | part), id as u64),
        u64::from(version),
    );
    Pcg64Mcg::from_seed(((u128::from(mix(lo, 2)) << 64) | u128::from(lo)).to_le_bytes())
}

/// Customer `id`'s profile after `versions` changes: a pure function, so a shopper keeps a
/// few counters rather than the text, and a customer's details can be drawn again at any
/// version (the change stream's `before` images).
pub fn profile(seed: u64, id: CustomerId, versions: Versions) -> CustomerProfile {
    let mut rng = part_rng(seed, id, NAME, 0);
    let first_name: String = FirstName().fake_with_rng(&mut rng);
    let last_name: String = LastName().fake_with_rng(&mut rng);
    let clean = |text: &str| -> String {
        text.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let (first, last) = (clean(&first_name), clean(&last_name));
    let mut rng = part_rng(seed, id, EMAIL, versions.email);
    let provider: String = FreeEmailProvider().fake_with_rng(&mut rng);
    // Each change of address takes the next form of the local part, so it differs from the
    // one before.
    let local = match versions.email % 3 {
        0 => format!("{first}.{last}"),
        1 => format!("{first}{last}"),
        _ => format!("{}.{last}", first.chars().next().unwrap_or('x')),
    };
    let email = format!("{local}{id}@{provider}");
    let phone: String = PhoneNumber().fake_with_rng(&mut part_rng(seed, id, PHONE, versions.phone));
    let mut rng = part_rng(seed, id, ADDRESS, versions.address);
    let building: String = BuildingNumber().fake_with_rng(&mut rng);
    let street: String = StreetName().fake_with_rng(&mut rng);
    let suffix: String = StreetSuffix().fake_with_rng(&mut rng);
    let first_consent = part_rng(seed, id, CONSENT, 0).random_bool(0.55);
    CustomerProfile {
        first_name,
        last_name,
        email,
        phone,
        street_address: format!("{building} {street} {suffix}"),
        city: CityName().fake_with_rng(&mut rng),
        region: StateAbbr().fake_with_rng(&mut rng),
        postal_code: ZipCode().fake_with_rng(&mut rng),
        country: "US",
        marketing_consent: first_consent ^ (versions.consent % 2 == 1),
    }
}

/// A shopper's pending follow-ups in time order, first scheduled first among those due at the
/// same instant. A heap: a busy customer has dozens pending (payments due in seconds,
/// deliveries and returns days ahead), and a sorted list moved most of them at every
/// insertion. The heap holds only when each is due (16 bytes) and the follow-ups stay in
/// their slots, packed (88 bytes instead of 120), so a wake-up moves keys, not whole
/// follow-ups. Saved as the list of them, earliest first.
#[derive(Debug, Clone, Default)]
struct FollowUps {
    due: BinaryHeap<Due>,
    /// The follow-ups, by slot.
    slots: Vec<Kept>,
    /// The first free slot, if any: the free slots form a list through [`Kept::Free`].
    free: Option<u32>,
    /// The number the next follow-up is scheduled under.
    next: u32,
}

/// When a follow-up is due, the number it was scheduled under, and its slot.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Timestamp,
    number: u32,
    slot: u32,
}

impl Due {
    fn key(&self) -> (Timestamp, u32) {
        (self.at, self.number)
    }
}

impl Ord for Due {
    /// The follow-up due first is the greatest: at the top of the (max-)heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Due {}

/// A slot of [`FollowUps`].
#[derive(Debug, Clone, Copy)]
enum Kept {
    Pending(Packed),
    /// Free, followed in the free list by this slot, if any.
    Free(Option<u32>),
}

/// A pending follow-up as its slot keeps it. When it is due is its key's ([`Due::at`]); its
/// action is flattened, the kind beside the other one-byte fields rather than a tag padded to
/// eight bytes; and the order's total, always `subtotal - discount + tax + shipping`, is
/// computed again when it is taken out.
#[derive(Debug, Clone, Copy)]
struct Packed {
    order: OrderId,
    subtotal: Money,
    discount: Money,
    tax: Money,
    shipping: Money,
    placed: Timestamp,
    order_changed: Timestamp,
    /// The payment the action refers to, if it refers to one: its id, when it was authorised
    /// and when it last changed.
    payment: PaymentId,
    paid_created: Timestamp,
    paid_changed: Timestamp,
    kind: Kind,
    /// The attempt to ask for (an authorisation), or the one that went through.
    attempt: u8,
    paid_method: u8,
    channel: u8,
    method: u8,
    currency: u8,
}

/// The kind of a packed [`Action`].
#[derive(Debug, Clone, Copy)]
enum Kind {
    Authorize,
    Capture,
    Ship,
    Deliver,
    Return,
    CancelUnpaid,
    CancelPaid,
}

impl Packed {
    /// Packs `follow_up`, whose attempt is one of [`MAX_PAYMENT_ATTEMPTS`] (checked when a
    /// saved state is read).
    fn pack(follow_up: &FollowUp) -> Self {
        let (kind, attempt, paid) = match follow_up.action {
            Action::Authorize { attempt } => (Kind::Authorize, attempt, None),
            Action::Capture(paid) => (Kind::Capture, paid.attempt, Some(paid)),
            Action::Ship(paid) => (Kind::Ship, paid.attempt, Some(paid)),
            Action::Deliver(paid) => (Kind::Deliver, paid.attempt, Some(paid)),
            Action::Return(paid) => (Kind::Return, paid.attempt, Some(paid)),
            Action::Cancel(None) => (Kind::CancelUnpaid, 0, None),
            Action::Cancel(Some(paid)) => (Kind::CancelPaid, paid.attempt, Some(paid)),
        };
        let none = Timestamp::from_micros(0);
        let totals = &follow_up.totals;
        Self {
            order: follow_up.order,
            subtotal: totals.subtotal,
            discount: totals.discount,
            tax: totals.tax,
            shipping: totals.shipping,
            placed: follow_up.placed,
            order_changed: follow_up.order_changed,
            payment: paid.map_or(0, |p| p.payment),
            paid_created: paid.map_or(none, |p| p.created),
            paid_changed: paid.map_or(none, |p| p.changed),
            kind,
            attempt: attempt as u8,
            paid_method: paid.map_or(0, |p| p.method),
            channel: follow_up.channel,
            method: follow_up.method,
            currency: follow_up.currency,
        }
    }

    /// The follow-up, due at `at`.
    fn unpack(&self, at: Timestamp) -> FollowUp {
        let attempt = i32::from(self.attempt);
        let paid = Paid {
            payment: self.payment,
            attempt,
            method: self.paid_method,
            created: self.paid_created,
            changed: self.paid_changed,
        };
        let action = match self.kind {
            Kind::Authorize => Action::Authorize { attempt },
            Kind::Capture => Action::Capture(paid),
            Kind::Ship => Action::Ship(paid),
            Kind::Deliver => Action::Deliver(paid),
            Kind::Return => Action::Return(paid),
            Kind::CancelUnpaid => Action::Cancel(None),
            Kind::CancelPaid => Action::Cancel(Some(paid)),
        };
        FollowUp {
            at,
            order: self.order,
            totals: OrderTotals {
                subtotal: self.subtotal,
                discount: self.discount,
                tax: self.tax,
                shipping: self.shipping,
                total: self.subtotal - self.discount + self.tax + self.shipping,
            },
            channel: self.channel,
            method: self.method,
            currency: self.currency,
            placed: self.placed,
            order_changed: self.order_changed,
            action,
        }
    }
}

impl FollowUp {
    /// Why a saved follow-up cannot be pending, if it cannot: what [`Packed`] relies on.
    fn invalid(&self) -> Option<String> {
        let attempt = match self.action {
            Action::Authorize { attempt } => Some(attempt),
            Action::Capture(paid)
            | Action::Ship(paid)
            | Action::Deliver(paid)
            | Action::Return(paid)
            | Action::Cancel(Some(paid)) => Some(paid.attempt),
            Action::Cancel(None) => None,
        };
        if let Some(attempt) = attempt.filter(|a| !(1..=MAX_PAYMENT_ATTEMPTS).contains(a)) {
            return Some(format!(
                "order {}: payment attempt {attempt} is not between 1 and {MAX_PAYMENT_ATTEMPTS}",
                self.order
            ));
        }
        let t = &self.totals;
        let total = (t.subtotal.cents())
            .checked_sub(t.discount.cents())
            .and_then(|sum| sum.checked_add(t.tax.cents()))
            .and_then(|sum| sum.checked_add(t.shipping.cents()));
        (total != Some(t.total.cents())).then(|| {
            format!(
                "order {}: total {} is not subtotal - discount + tax + shipping",
                self.order,
                t.total.cents()
            )
        })
    }
}

impl FollowUps {
    /// The follow-up in `slot`, which the heap names, due at `at`.
    fn kept(&self, slot: u32, at: Timestamp) -> FollowUp {
        match &self.slots[slot as usize] {
            Kept::Pending(packed) => packed.unpack(at),
            Kept::Free(_) => unreachable!("the heap names only pending slots"),
        }
    }

    /// When the follow-up due first is due.
    fn first_at(&self) -> Option<Timestamp> {
        self.due.peek().map(|due| due.at)
    }

    /// The follow-up due first, taken out if `due` says its instant has come.
    fn pop_if(&mut self, due: impl FnOnce(Timestamp) -> bool) -> Option<FollowUp> {
        if due(self.first_at()?) {
            self.pop()
        } else {
            None
        }
    }

    fn pop(&mut self) -> Option<FollowUp> {
        let due = self.due.pop()?;
        let follow_up = self.kept(due.slot, due.at);
        if self.due.is_empty() {
            // Nothing pending: the slots start afresh (keeping their room).
            self.slots.clear();
            self.free = None;
        } else {
            self.slots[due.slot as usize] = Kept::Free(self.free);
            self.free = Some(due.slot);
        }
        Some(follow_up)
    }

    /// Schedules `follow_up` after every one already due at the same instant.
    fn push(&mut self, follow_up: FollowUp) {
        if self.next == u32::MAX {
            // Numbered afresh, in the same order, before the numbers run out.
            let in_order = self.in_order();
            *self = Self::default();
            in_order.into_iter().for_each(|f| self.push(f));
        }
        let packed = Kept::Pending(Packed::pack(&follow_up));
        let slot = match self.free {
            Some(slot) => {
                if let Kept::Free(next) = self.slots[slot as usize] {
                    self.free = next;
                }
                self.slots[slot as usize] = packed;
                slot
            }
            None => {
                self.slots.push(packed);
                (self.slots.len() - 1) as u32
            }
        };
        self.due.push(Due {
            at: follow_up.at,
            number: self.next,
            slot,
        });
        self.next += 1;
    }

    /// Every pending follow-up, earliest first.
    fn in_order(&self) -> Vec<FollowUp> {
        let mut due: Vec<Due> = self.due.iter().copied().collect();
        due.sort_unstable_by(|a, b| b.cmp(a));
        due.into_iter()
            .map(|due| self.kept(due.slot, due.at))
            .collect()
    }
}

impl PartialEq for FollowUps {
    fn eq(&self, other: &Self) -> bool {
        self.in_order() == other.in_order()
    }
}

impl Serialize for FollowUps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.in_order())
    }
}

impl<'de> Deserialize<'de> for FollowUps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut pending = Self::default();
        for follow_up in Vec::<FollowUp>::deserialize(d)? {
            if let Some(why) = follow_up.invalid() {
                return Err(serde::de::Error::custom(format!(
                    "a pending follow-up of {why}"
                )));
            }
            pending.push(follow_up);
        }
        Ok(pending)
    }
}

/// A shopper's activity before normalisation: a gamma variate of mean 1 drawn from
/// `(seed, id)` alone (1 for every shopper when `shape` is `None`).
pub fn raw_activity(seed: u64, id: CustomerId, shape: Option<f64>) -> f64 {
    let Some(shape) = shape else { return 1.0 };
    let lo = mix(mix(seed, 0xAC71_7174), id as u64);
    let mut rng =
        Pcg64Mcg::from_seed(((u128::from(mix(lo, 1)) << 64) | u128::from(lo)).to_le_bytes());
    let gamma = Gamma::new(shape, 1.0 / shape).expect("a positive shape");
    // Not 0: every shopper comes back some day.
    gamma.sample(&mut rng).max(1e-6)
}

fn exp_secs<R: rand::Rng + ?Sized>(rng: &mut R, mean_secs: f64) -> f64 {
    let x: f64 = Exp1.sample(rng);
    x * mean_secs * 1e6
}

fn pick_weighted<R: rand::Rng + ?Sized, T>(
    rng: &mut R,
    items: &[T],
    weight: impl Fn(&T) -> f64,
) -> usize {
    let mut u: f64 = rng.random::<f64>() * items.iter().map(&weight).sum::<f64>();
    for (i, item) in items.iter().enumerate() {
        u -= weight(item);
        if u < 0.0 {
            return i;
        }
    }
    items.len() - 1
}

/// A product by popularity, among those that can be ordered at `at`; while a category
/// promotion runs, its products are `uplift` times as likely (products of other categories are
/// redrawn with probability 1 - 1/uplift).
fn pick_product<R: rand::Rng + ?Sized>(
    ctx: &ShopContext,
    promotion: Option<&crate::model::Promotion>,
    at: Timestamp,
    rng: &mut R,
) -> Product {
    loop {
        let product = ctx.catalogue.pick(rng, at);
        let Some(promotion) = promotion else {
            return product;
        };
        if promotion.category.as_deref() == Some(product.category)
            || promotion.uplift <= 1.0
            || rng.random::<f64>() * promotion.uplift < 1.0
        {
            return product;
        }
    }
}

impl Shopper {
    /// Shopper `id` (its future customer id, from 1), whose first session follows `start` by an
    /// exponential gap. Its generator is seeded from `(seed, id)` alone.
    pub fn new(seed: u64, id: CustomerId, start: Timestamp, ctx: &ShopContext) -> Self {
        Self::prospect(seed, id, start, ctx, FollowUps::default())
    }

    /// Prospective customer `id`, not signed up yet, who takes the slot at `at` and inherits
    /// `pending` (the follow-ups of the slot's previous customer).
    fn prospect(
        seed: u64,
        id: CustomerId,
        at: Timestamp,
        ctx: &ShopContext,
        pending: FollowUps,
    ) -> Self {
        let lo = mix(seed, id as u64);
        let hi = mix(lo, 0x5EED);
        let mut rng = Pcg64Mcg::from_seed(((u128::from(hi) << 64) | u128::from(lo)).to_le_bytes());
        let preferred_method = pick_weighted(&mut rng, &PAYMENT_METHODS, |m| m.1) as u8;
        let activity = raw_activity(seed, id, ctx.activity_shape) / ctx.activity_mean;
        let never = Timestamp::from_micros(i64::MAX);
        // The slot's next customer needs an id whose orders fit in 64 bits.
        let leaves_at = match ctx.mean_lifetime_micros {
            Some(mean) if id + ctx.customer_id_stride <= MAX_CUSTOMER_ID => {
                let lifetime: f64 = Exp1.sample(&mut rng);
                at.add_micros_f64((lifetime * mean).max(1.0))
            }
            _ => never,
        };
        let mut shopper = Self {
            id,
            mean_gap: ctx.mean_session_gap_micros / activity,
            rng,
            next_session: never,
            customer: None,
            leaves_at,
            orders: 0,
            preferred_method,
            currency: 0,
            pending,
        };
        shopper.next_session = shopper.session_after(at, ctx);
        shopper
    }

    /// Hands the slot to the next prospective customer at `at`, the instant its customer left;
    /// the follow-ups of the one who left stay.
    fn hand_over(&mut self, at: Timestamp, ctx: &ShopContext) {
        let next = self.id + ctx.customer_id_stride;
        if next > MAX_CUSTOMER_ID {
            // The slot's id space is used up: it goes quiet once its last orders played out.
            self.leaves_at = Timestamp::from_micros(i64::MAX);
            self.next_session = self.leaves_at;
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        *self = Self::prospect(ctx.seed, next, at, ctx, pending);
    }

    /// The next session after `from`, or the customer's departure if that comes first.
    fn session_after(&mut self, from: Timestamp, ctx: &ShopContext) -> Timestamp {
        self.draw_session(from, ctx).min(self.leaves_at)
    }

    /// The next session after `from`: thinning of candidates that arrive at the bounding
    /// intensity, each kept with probability shape / bound.
    fn draw_session(&mut self, from: Timestamp, ctx: &ShopContext) -> Timestamp {
        let bound = ctx.traffic.bound();
        let mean_gap = self.mean_gap / bound;
        let mut at = from;
        loop {
            let gap: f64 = Exp1.sample(&mut self.rng);
            // At least one microsecond, so time always moves on.
            at = at.add_micros_f64((gap * mean_gap).max(1.0));
            if ctx.traffic.is_flat() || self.rng.random::<f64>() * bound < ctx.traffic.shape(at) {
                return at;
            }
        }
    }

    /// The shopper's (future) customer id.
    pub fn id(&self) -> CustomerId {
        self.id
    }

    /// When the customer next changes something (the end of time if never).
    fn next_change(&self) -> Timestamp {
        self.customer
            .map_or(Timestamp::from_micros(i64::MAX), |c| c.next_change)
    }

    /// When the shopper next has something to do.
    pub fn next_wake(&self) -> Timestamp {
        let session = self.next_session.min(self.next_change());
        match self.pending.first_at() {
            Some(at) if at < session => at,
            _ => session,
        }
    }

    /// Runs everything due at or before `now`, in time order, appending the events to `out`.
    /// Each event carries the instant it was due (truncated to milliseconds). Among things due
    /// at the same instant, a follow-up goes before a change of details, and both before a
    /// session (a session due with anything else goes first).
    pub fn step(&mut self, now: Timestamp, ctx: &ShopContext, out: &mut Vec<Event>) {
        loop {
            let change = self.next_change();
            let session = self.next_session;
            let due = |at| at <= now && at < session && at <= change;
            if let Some(follow_up) = self.pending.pop_if(due) {
                self.follow_up(follow_up, ctx, out);
            } else if change <= now && change < session {
                self.change(change, ctx, out);
            } else if self.next_session <= now {
                let at = self.next_session;
                if at >= self.leaves_at {
                    self.hand_over(at, ctx);
                } else {
                    self.session(at, ctx, out);
                }
            } else {
                return;
            }
        }
    }

    fn schedule(&mut self, follow_up: FollowUp) {
        self.pending.push(follow_up);
    }

    /// When the customer changes something next after `at`: never once they have left.
    fn change_after(&mut self, at: Timestamp, ctx: &ShopContext) -> Timestamp {
        let rate = ctx.changes.per_micro();
        if rate <= 0.0 {
            return Timestamp::from_micros(i64::MAX);
        }
        let gap: f64 = Exp1.sample(&mut self.rng);
        let next = at.add_micros_f64((gap / rate).max(1.0));
        if next >= self.leaves_at {
            Timestamp::from_micros(i64::MAX)
        } else {
            next
        }
    }

    /// The customer changes something at `at`: an update with the whole customer after it, or
    /// an erasure, after which the customer leaves (the slot's next customer takes over).
    fn change(&mut self, at: Timestamp, ctx: &ShopContext, out: &mut Vec<Event>) {
        let Some(mut customer) = self.customer else {
            return;
        };
        let rates = &ctx.changes;
        let kinds = [
            (Change::Move, rates.moves),
            (Change::Email, rates.contact_changes / 2.0),
            (Change::Phone, rates.contact_changes / 2.0),
            (Change::Consent, rates.consent_changes),
            (Change::Erasure, rates.erasures),
        ];
        let kind = kinds[pick_weighted(&mut self.rng, &kinds, |k| k.1)].0;
        let before = profile(ctx.seed, self.id, customer.versions);
        let mut details = None;
        let mut changed = Vec::new();
        if kind != Change::Erasure {
            // A new version of the part; one that changes nothing (the same phone number drawn
            // again) is skipped, so an update always changes something.
            while changed.is_empty() {
                let versions = &mut customer.versions;
                let version = match kind {
                    Change::Move => &mut versions.address,
                    Change::Email => &mut versions.email,
                    Change::Phone => &mut versions.phone,
                    Change::Consent | Change::Erasure => &mut versions.consent,
                };
                *version = version.wrapping_add(1);
                let after = profile(ctx.seed, self.id, customer.versions);
                changed = before.changed_fields(&after);
                details = Some(after);
            }
        }
        let time = at.truncate_to_millis();
        let event = CustomerEvent {
            changed_fields: changed,
            before: Some(Box::new((before, customer.changed_at))),
            ..CustomerEvent::new(
                new_event_id(&mut self.rng),
                EventType::CustomerUpdated,
                time,
                self.id,
                customer.signed_up_at,
                customer.channel,
            )
        };
        customer.changed_at = time;
        if kind == Change::Erasure {
            out.push(Event::Customer(CustomerEvent {
                event_type: EventType::CustomerDeleted,
                ..event
            }));
            // The customer leaves now: no order and no change of theirs follows.
            customer.next_change = Timestamp::from_micros(i64::MAX);
            self.customer = Some(customer);
            self.leaves_at = at;
            self.next_session = at;
            return;
        }
        out.push(Event::Customer(event.with_profile(details)));
        self.customer = Some(customer);
        let next = self.change_after(at, ctx);
        if let Some(customer) = &mut self.customer {
            customer.next_change = next;
        }
    }

    fn session(&mut self, at: Timestamp, ctx: &ShopContext, out: &mut Vec<Event>) {
        let time = at.truncate_to_millis();
        if self.customer.is_none() {
            out.push(Event::Customer(self.sign_up(time, at, ctx)));
            if !ctx.currencies.is_empty() {
                self.currency = pick_currency(&mut self.rng, &ctx.currencies);
            }
        }
        let order = self.place_order(time, ctx);
        let delay = exp_secs(&mut self.rng, MEAN_AUTHORIZATION_DELAY_SECS);
        self.schedule(FollowUp {
            at: at.add_micros_f64(delay),
            order: order.order_id,
            totals: OrderTotals {
                subtotal: order.subtotal,
                discount: order.discount,
                tax: order.tax,
                shipping: order.shipping,
                total: order.total,
            },
            channel: order.channel.index() as u8,
            method: self.preferred_method,
            currency: self.currency,
            placed: time,
            order_changed: time,
            action: Action::Authorize { attempt: 1 },
        });
        out.push(Event::Order(order));
        if self.orders >= MAX_ORDERS_PER_CUSTOMER {
            // No order id is left for this customer: it leaves.
            self.leaves_at = at;
        }
        self.next_session = self.session_after(at, ctx);
    }

    /// The customer signs up at `at` (`time` in milliseconds).
    fn sign_up(&mut self, time: Timestamp, at: Timestamp, ctx: &ShopContext) -> CustomerEvent {
        let channel = CHANNELS[pick_weighted(&mut self.rng, &CHANNELS, |c| c.1)].0;
        let event_id = new_event_id(&mut self.rng);
        let versions = Versions::default();
        let next_change = self.change_after(at, ctx);
        self.customer = Some(Customer {
            signed_up_at: time,
            channel,
            versions,
            changed_at: time,
            next_change,
        });
        CustomerEvent::new(
            event_id,
            EventType::CustomerSignedUp,
            time,
            self.id,
            time,
            channel,
        )
        .with_profile(Some(profile(ctx.seed, self.id, versions)))
    }

    fn place_order(&mut self, time: Timestamp, ctx: &ShopContext) -> OrderEvent {
        let rng = &mut self.rng;
        let extra_lines: f64 = Poisson::new(0.9).expect("a positive mean").sample(rng);
        let wanted = (1 + extra_lines as usize).min(MAX_LINES);
        let quantities = Geometric::new(0.72).expect("a probability in (0, 1]");
        let mut items: Vec<OrderLine> = Vec::with_capacity(wanted);
        let promotion = ctx.traffic.category_promotion(time);
        let (rules, rate) = currency(ctx, self.currency);
        for _ in 0..wanted {
            let product = pick_product(ctx, promotion, time, rng);
            let unit_price = ctx.catalogue.price(&product, time).convert(rate);
            let quantity =
                (1 + quantities.sample(rng).min(MAX_QUANTITY as u64 - 1) as i32).min(MAX_QUANTITY);
            // The same product drawn twice adds to its line rather than making a second one.
            match items.iter_mut().find(|l| l.product_id == product.id) {
                Some(line) => line.quantity = (line.quantity + quantity).min(MAX_QUANTITY),
                None => items.push(OrderLine {
                    line_number: items.len() as i32 + 1,
                    product_id: product.id,
                    quantity,
                    unit_price,
                    line_total: Money::ZERO,
                }),
            }
        }
        for line in &mut items {
            line.line_total = line.unit_price * i64::from(line.quantity);
        }
        let discount_rate = if rng.random_bool(ctx.discount_probability) {
            COUPON_RATES[rng.random_range(0..COUPON_RATES.len())]
        } else {
            0.0
        };
        let markdown = promotion.map_or(Money::ZERO, |p| {
            items
                .iter()
                .filter(|l| ctx.catalogue.category_of(l.product_id) == p.category.as_deref())
                .map(|l| l.line_total.scale(p.discount))
                .sum()
        });
        let totals = rules.price(&items, discount_rate, markdown);
        let channel = CHANNELS[pick_weighted(rng, &CHANNELS, |c| c.1)].0;
        self.orders += 1;
        OrderEvent {
            event_id: new_event_id(rng),
            event_type: EventType::OrderPlaced,
            event_time: time,
            order_id: order_id(self.id, self.orders),
            customer_id: self.id,
            items,
            subtotal: totals.subtotal,
            discount: totals.discount,
            tax: totals.tax,
            shipping: totals.shipping,
            total: totals.total,
            currency: rules.currency,
            channel,
            status: OrderStatus::Placed,
            row: RowTimes {
                created_at: time,
                changed_before: time,
            },
        }
    }

    fn follow_up(&mut self, follow_up: FollowUp, ctx: &ShopContext, out: &mut Vec<Event>) {
        let time = follow_up.at.truncate_to_millis();
        let later = |follow_up: &FollowUp, secs: f64, action: Action| FollowUp {
            at: follow_up.at.add_micros_f64((secs * 1e6).max(1.0)),
            action,
            ..*follow_up
        };
        match follow_up.action {
            Action::Authorize { attempt } => {
                // A retry sometimes switches to another method.
                let method = if attempt > 1 && self.rng.random_bool(0.5) {
                    pick_weighted(&mut self.rng, &PAYMENT_METHODS, |m| m.1) as u8
                } else {
                    follow_up.method
                };
                let (_, _, decline_rate, reasons) = PAYMENT_METHODS[usize::from(method)];
                let paid = Paid {
                    payment: payment_id(follow_up.order, attempt),
                    attempt,
                    method,
                    created: time,
                    changed: time,
                };
                let declined = self.rng.random_bool(decline_rate);
                let failure_reason =
                    declined.then(|| reasons[self.rng.random_range(0..reasons.len())]);
                let status = if declined {
                    PaymentStatus::Declined
                } else {
                    PaymentStatus::Authorized
                };
                out.push(self.payment_event(time, &follow_up, paid, status, failure_reason, ctx));
                if !declined {
                    let delay = log_normal(&mut self.rng, MEDIAN_CAPTURE_DELAY_SECS, 1.0);
                    self.schedule(later(&follow_up, delay, Action::Capture(paid)));
                } else if attempt < MAX_PAYMENT_ATTEMPTS && self.rng.random_bool(RETRY_PROBABILITY)
                {
                    let delay = exp_secs(&mut self.rng, MEAN_RETRY_DELAY_SECS) / 1e6;
                    let retry = Action::Authorize {
                        attempt: attempt + 1,
                    };
                    self.schedule(later(&follow_up, delay, retry));
                } else {
                    // No more attempts: the shop cancels the unpaid order.
                    let delay = exp_secs(&mut self.rng, MEAN_UNPAID_CANCEL_DELAY_SECS) / 1e6;
                    self.schedule(later(&follow_up, delay, Action::Cancel(None)));
                }
            }
            Action::Capture(paid) => {
                out.push(self.payment_event(
                    time,
                    &follow_up,
                    paid,
                    PaymentStatus::Captured,
                    None,
                    ctx,
                ));
                let paid = Paid {
                    changed: time,
                    ..paid
                };
                let shipping = log_normal(&mut self.rng, MEDIAN_SHIPPING_DELAY_SECS, 0.7);
                if self.rng.random_bool(CANCEL_PROBABILITY) {
                    // The customer changes their mind before the parcel leaves.
                    let delay = shipping * self.rng.random::<f64>();
                    self.schedule(later(&follow_up, delay, Action::Cancel(Some(paid))));
                } else {
                    self.schedule(later(&follow_up, shipping, Action::Ship(paid)));
                }
            }
            Action::Ship(paid) => {
                out.push(self.order_status(time, &follow_up, OrderStatus::Shipped, ctx));
                let delay = log_normal(&mut self.rng, MEDIAN_DELIVERY_DELAY_SECS, 0.4);
                let shipped = FollowUp {
                    order_changed: time,
                    ..follow_up
                };
                self.schedule(later(&shipped, delay, Action::Deliver(paid)));
            }
            Action::Deliver(paid) => {
                out.push(self.order_status(time, &follow_up, OrderStatus::Delivered, ctx));
                if self.rng.random_bool(RETURN_PROBABILITY) {
                    let delay = self.rng.random::<f64>() * RETURN_WINDOW_DAYS * 86_400.0;
                    let delivered = FollowUp {
                        order_changed: time,
                        ..follow_up
                    };
                    self.schedule(later(&delivered, delay, Action::Return(paid)));
                }
            }
            Action::Return(paid) => {
                out.push(self.order_status(time, &follow_up, OrderStatus::Returned, ctx));
                out.push(self.refund(time, &follow_up, paid, ctx));
            }
            Action::Cancel(paid) => {
                out.push(self.order_status(time, &follow_up, OrderStatus::Cancelled, ctx));
                if let Some(paid) = paid {
                    out.push(self.refund(time, &follow_up, paid, ctx));
                }
            }
        }
    }

    /// The refund of a captured payment.
    fn refund(
        &mut self,
        time: Timestamp,
        follow_up: &FollowUp,
        paid: Paid,
        ctx: &ShopContext,
    ) -> Event {
        self.payment_event(time, follow_up, paid, PaymentStatus::Refunded, None, ctx)
    }

    /// An order's status change: the order's amounts, no lines.
    fn order_status(
        &mut self,
        time: Timestamp,
        follow_up: &FollowUp,
        status: OrderStatus,
        ctx: &ShopContext,
    ) -> Event {
        let totals = follow_up.totals;
        Event::Order(OrderEvent {
            event_id: new_event_id(&mut self.rng),
            event_type: status.event_type(),
            event_time: time,
            order_id: follow_up.order,
            customer_id: follow_up.order / ID_STRIDE,
            items: Vec::new(),
            subtotal: totals.subtotal,
            discount: totals.discount,
            tax: totals.tax,
            shipping: totals.shipping,
            total: totals.total,
            currency: currency(ctx, follow_up.currency).0.currency,
            channel: CHANNELS[usize::from(follow_up.channel)].0,
            status,
            row: RowTimes {
                created_at: follow_up.placed,
                changed_before: follow_up.order_changed,
            },
        })
    }

    fn payment_event(
        &mut self,
        time: Timestamp,
        follow_up: &FollowUp,
        paid: Paid,
        status: PaymentStatus,
        failure_reason: Option<&'static str>,
        ctx: &ShopContext,
    ) -> Event {
        Event::Payment(PaymentEvent {
            event_id: new_event_id(&mut self.rng),
            event_type: status.event_type(),
            event_time: time,
            payment_id: paid.payment,
            order_id: follow_up.order,
            customer_id: follow_up.order / ID_STRIDE,
            amount: follow_up.totals.total,
            currency: currency(ctx, follow_up.currency).0.currency,
            method: PAYMENT_METHODS[usize::from(paid.method)].0,
            status,
            attempt: paid.attempt,
            failure_reason,
            row: RowTimes {
                created_at: paid.created,
                changed_before: paid.changed,
            },
        })
    }
}

/// The rules and conversion rate of currency `index`: 0 for the shop's, i for
/// `ctx.currencies[i - 1]`.
fn currency(ctx: &ShopContext, index: u8) -> (&ShopRules, f64) {
    match usize::from(index).checked_sub(1) {
        Some(i) => (&ctx.currencies[i].rules, ctx.currencies[i].rate),
        None => (&ctx.rules, 1.0),
    }
}

/// A customer's currency, by the currencies' shares (the rest pay in the shop's).
fn pick_currency<R: rand::Rng + ?Sized>(rng: &mut R, currencies: &[Currency]) -> u8 {
    let mut u: f64 = rng.random();
    for (i, c) in currencies.iter().enumerate() {
        u -= c.share;
        if u < 0.0 {
            return i as u8 + 1;
        }
    }
    0
}

/// A log-normal delay in seconds with the given median.
fn log_normal<R: rand::Rng + ?Sized>(rng: &mut R, median_secs: f64, sigma: f64) -> f64 {
    LogNormal::new(median_secs.ln(), sigma)
        .expect("finite parameters")
        .sample(rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn follow_up(at: i64, order: u64) -> FollowUp {
        FollowUp {
            at: Timestamp::from_micros(at),
            order: order as OrderId,
            totals: OrderTotals {
                subtotal: Money::ZERO,
                discount: Money::ZERO,
                tax: Money::ZERO,
                shipping: Money::ZERO,
                total: Money::ZERO,
            },
            channel: 0,
            method: 0,
            currency: 0,
            placed: Timestamp::from_micros(at),
            order_changed: Timestamp::from_micros(at),
            action: Action::Authorize { attempt: 1 },
        }
    }

    proptest! {
        /// The heap gives follow-ups back as a list kept sorted by time would, first scheduled
        /// first among equal instants (the order the golden output depends on), and a save
        /// and its restore change nothing.
        #[test]
        fn follow_ups_come_due_in_time_order_first_come_first_served(
            ops in proptest::collection::vec(proptest::option::of(0i64..8), 1..200),
        ) {
            let mut heap = FollowUps::default();
            let mut sorted: Vec<FollowUp> = Vec::new();
            for (order, op) in ops.into_iter().enumerate() {
                match op {
                    Some(at) => {
                        let f = follow_up(at, order as u64);
                        heap.push(f);
                        let index = sorted.partition_point(|g| g.at <= f.at);
                        sorted.insert(index, f);
                    }
                    None => {
                        let expected = (!sorted.is_empty()).then(|| sorted.remove(0));
                        prop_assert_eq!(heap.pop(), expected);
                    }
                }
                prop_assert_eq!(heap.first_at(), sorted.first().map(|f| f.at));
                let saved = serde_json::to_string(&heap).unwrap();
                prop_assert_eq!(&saved, &serde_json::to_string(&sorted).unwrap());
                let restored: FollowUps = serde_json::from_str(&saved).unwrap();
                prop_assert_eq!(restored.in_order(), heap.in_order());
            }
        }
    }

    #[test]
    fn a_pending_follow_up_is_kept_in_88_bytes() {
        assert_eq!(std::mem::size_of::<Kept>(), 88);
    }

    #[test]
    fn every_action_comes_back_from_its_slot_as_it_went_in() {
        let paid = Paid {
            payment: 7_000_003,
            attempt: MAX_PAYMENT_ATTEMPTS,
            method: 2,
            created: Timestamp::from_micros(11),
            changed: Timestamp::from_micros(12),
        };
        let actions = [
            Action::Authorize { attempt: 2 },
            Action::Capture(paid),
            Action::Ship(paid),
            Action::Deliver(paid),
            Action::Return(paid),
            Action::Cancel(None),
            Action::Cancel(Some(paid)),
        ];
        for action in actions {
            let mut f = follow_up(40, 9);
            f.totals = OrderTotals {
                subtotal: Money::from_cents(10_000),
                discount: Money::from_cents(1_500),
                tax: Money::from_cents(680),
                shipping: Money::from_cents(499),
                total: Money::from_cents(9_679),
            };
            f.channel = 2;
            f.method = 1;
            f.currency = 3;
            f.placed = Timestamp::from_micros(5);
            f.action = action;
            assert_eq!(Packed::pack(&f).unpack(f.at), f);
        }
    }

    #[test]
    fn a_saved_follow_up_that_cannot_be_pending_is_refused_with_its_reason() {
        let mut bad_attempt = follow_up(1, 4);
        bad_attempt.action = Action::Authorize { attempt: 300 };
        let mut bad_total = follow_up(1, 5);
        bad_total.totals.total = Money::from_cents(1);
        for (bad, reason) in [
            (
                bad_attempt,
                "order 4: payment attempt 300 is not between 1 and 3",
            ),
            (
                bad_total,
                "order 5: total 1 is not subtotal - discount + tax + shipping",
            ),
        ] {
            let saved = serde_json::to_string(&vec![bad]).unwrap();
            let error = serde_json::from_str::<FollowUps>(&saved).unwrap_err();
            assert!(error.to_string().contains(reason), "{error}");
        }
    }

    #[test]
    fn follow_ups_are_renumbered_before_their_numbers_run_out() {
        let mut heap = FollowUps {
            next: u32::MAX - 1,
            ..FollowUps::default()
        };
        for order in 0..4 {
            heap.push(follow_up(5, order));
        }
        assert!(heap.next < 10, "renumbered from 0");
        let orders: Vec<OrderId> = std::iter::from_fn(|| heap.pop()).map(|f| f.order).collect();
        assert_eq!(orders, [0, 1, 2, 3]);
    }

    fn context(mean_gap_secs: f64) -> ShopContext {
        ShopContext {
            catalogue: Catalogue::generate(1, 50, 1.1, Timestamp::from_micros(0)).unwrap(),
            rules: ShopRules {
                currency: crate::model::CurrencyCode::from_ascii(b"EUR"),
                tax_rate: 0.2,
                shipping_fee: Money::from_cents(499),
                free_shipping_threshold: Money::from_cents(4000),
            },
            mean_session_gap_micros: mean_gap_secs * 1e6,
            discount_probability: 0.3,
            currencies: Vec::new(),
            traffic: crate::model::TrafficProfile::flat(),
            activity_shape: None,
            activity_mean: 1.0,
            seed: 0,
            mean_lifetime_micros: None,
            customer_id_stride: 1_000_000,
            changes: crate::shoppers::CustomerChanges::default(),
        }
    }

    /// Steps a shopper `steps` times and returns each step's instant and events.
    fn run(shopper: &mut Shopper, ctx: &ShopContext, steps: usize) -> Vec<(Timestamp, Vec<Event>)> {
        (0..steps)
            .map(|_| {
                let at = shopper.next_wake();
                let mut out = Vec::new();
                shopper.step(at, ctx, &mut out);
                (at, out)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_shoppers_stream_is_causal_and_reproducible(
            seed in any::<u64>(),
            id in 1i64..1_000_000,
            mean_gap_secs in 1.0f64..100_000.0,
        ) {
            let ctx = context(mean_gap_secs);
            let start = Timestamp::from_micros(1_750_000_000_000_000);
            let mut shopper = Shopper::new(seed, id, start, &ctx);
            let mut twin = shopper.clone();
            let steps = run(&mut shopper, &ctx, 200);
            prop_assert_eq!(&steps, &run(&mut twin, &ctx, 200));

            let mut last = start;
            let mut orders = std::collections::HashMap::new();
            let mut signed_up = false;
            for (at, events) in &steps {
                prop_assert!(*at >= last, "time went backwards");
                last = *at;
                prop_assert!(!events.is_empty(), "a wake-up with nothing to do");
                for event in events {
                    prop_assert_eq!(event.event_time(), at.truncate_to_millis());
                    match event {
                        Event::Customer(c) => {
                            prop_assert!(!signed_up);
                            prop_assert_eq!(c.customer_id, id);
                            signed_up = true;
                        }
                        Event::Order(o) => {
                            prop_assert!(signed_up, "order before sign-up");
                            prop_assert_eq!(o.order_id / crate::model::ID_STRIDE, id);
                            prop_assert_eq!(o.total, o.subtotal - o.discount + o.tax + o.shipping);
                            orders.insert(o.order_id, o.total);
                        }
                        Event::Payment(p) => {
                            prop_assert_eq!(orders.get(&p.order_id), Some(&p.amount));
                            prop_assert_eq!(p.payment_id / crate::model::ID_STRIDE, id);
                        }
                        Event::Product(_) => prop_assert!(false, "shoppers do not publish products"),
                    }
                }
            }
        }
    }

    #[test]
    fn different_shoppers_and_seeds_draw_different_streams() {
        let ctx = context(3_600.0);
        let start = Timestamp::from_micros(0);
        let first = |seed, id| Shopper::new(seed, id, start, &ctx).next_wake();
        assert_ne!(first(1, 1), first(1, 2));
        assert_ne!(first(1, 1), first(2, 1));
        assert_eq!(first(1, 1), first(1, 1));
    }
}
