//! The product catalogue: categories, products and how popular each product is.
//!
//! The catalogue is a pure function of its seed and size, built once at start and shared by all
//! shoppers. Popularity follows a Zipf law over a seeded permutation of the products, so a few
//! products sell most, in every category.
//!
//! Prices change now and then. Every product's price is reviewed once a [`REVIEW_PERIOD`], at
//! its own minute of the week; for each period, a product is off its list price (cut or raised
//! by 5 to 20%) with the catalogue's repricing probability, and otherwise back at it. A price is
//! therefore a pure function of the product and the instant ([`Catalogue::price`]), which every
//! shopper can ask without coordination, and a review that changes a price is published as a
//! `product_repriced` event at that instant ([`Catalogue::repriced_at`]).

use rand::{RngExt, SeedableRng, seq::SliceRandom};
use rand_distr::{Distribution, LogNormal, Zipf};
use rand_pcg::Pcg64Mcg;

use std::time::Duration;

use super::{
    CurrencyCode, EventType, Money, ProductEvent, ProductId, ProductRowContext, Timestamp, mix,
    new_event_id,
};

/// How often each product's price is reviewed.
pub const REVIEW_PERIOD: Duration = Duration::from_secs(7 * 86_400);
const REVIEW_PERIOD_MICROS: i64 = REVIEW_PERIOD.as_secs() as i64 * 1_000_000;
/// Price factors of a product off its list price.
const PRICE_FACTORS: [f64; 6] = [0.80, 0.85, 0.90, 0.95, 1.05, 1.10];

/// A category: its name, the nouns its products are named after and its typical price.
struct CategorySpec {
    name: &'static str,
    nouns: &'static [&'static str],
    median_price: f64,
}

const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        name: "Electronics",
        nouns: &[
            "Headphones",
            "Bluetooth Speaker",
            "USB-C Charger",
            "Power Bank",
            "Smartwatch",
            "Webcam",
            "Keyboard",
            "Mouse",
        ],
        median_price: 59.0,
    },
    CategorySpec {
        name: "Home & Kitchen",
        nouns: &[
            "Chef's Knife",
            "Frying Pan",
            "Coffee Grinder",
            "Cutting Board",
            "Mixing Bowl Set",
            "Kettle",
            "Toaster",
            "Storage Jars",
        ],
        median_price: 34.0,
    },
    CategorySpec {
        name: "Clothing",
        nouns: &[
            "T-Shirt",
            "Hoodie",
            "Jeans",
            "Rain Jacket",
            "Sweater",
            "Chinos",
            "Polo Shirt",
            "Socks (3 pairs)",
        ],
        median_price: 29.0,
    },
    CategorySpec {
        name: "Shoes",
        nouns: &[
            "Running Shoes",
            "Sneakers",
            "Hiking Boots",
            "Sandals",
            "Loafers",
            "Slippers",
        ],
        median_price: 69.0,
    },
    CategorySpec {
        name: "Beauty",
        nouns: &[
            "Face Cream",
            "Shampoo",
            "Conditioner",
            "Lip Balm",
            "Sunscreen SPF 50",
            "Body Lotion",
            "Hand Soap",
        ],
        median_price: 14.0,
    },
    CategorySpec {
        name: "Sports & Outdoors",
        nouns: &[
            "Yoga Mat",
            "Water Bottle",
            "Dumbbell Pair",
            "Tent",
            "Sleeping Bag",
            "Headlamp",
            "Resistance Bands",
        ],
        median_price: 39.0,
    },
    CategorySpec {
        name: "Toys & Games",
        nouns: &[
            "Building Blocks",
            "Board Game",
            "Puzzle (1000 pieces)",
            "Plush Bear",
            "Card Game",
            "Kite",
        ],
        median_price: 24.0,
    },
    CategorySpec {
        name: "Books",
        nouns: &[
            "Cookbook",
            "Novel",
            "Travel Guide",
            "Notebook",
            "Sketchbook",
            "Planner",
        ],
        median_price: 16.0,
    },
    CategorySpec {
        name: "Grocery",
        nouns: &[
            "Ground Coffee",
            "Green Tea",
            "Olive Oil",
            "Dark Chocolate",
            "Granola",
            "Honey",
            "Pasta",
        ],
        median_price: 8.0,
    },
    CategorySpec {
        name: "Garden",
        nouns: &[
            "Garden Hose",
            "Pruning Shears",
            "Plant Pot",
            "Seed Kit",
            "Watering Can",
            "Garden Gloves",
        ],
        median_price: 22.0,
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Essential",
    "Premium",
    "Compact",
    "Everyday",
    "Deluxe",
    "Eco",
    "Pro",
    "Ultra",
    "Vintage",
    "Modern",
    "Lightweight",
    "Organic",
    "Signature",
    "Travel",
];

const COLOURS: &[&str] = &[
    "Black", "White", "Navy", "Grey", "Olive", "Sand", "Red", "Teal", "Charcoal", "Ivory",
];

/// A product as the catalogue holds it: what an order needs of it. Its `sku` and `name` are
/// made when it is published ([`Catalogue::names`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Product {
    pub id: ProductId,
    pub category_id: i32,
    pub category: &'static str,
    /// The list price.
    pub unit_price: Money,
    /// When in each review period the price is reviewed (microseconds, a whole minute).
    review_offset: i64,
    /// When it joined the catalogue: the catalogue's start, or its predecessor's end.
    pub since: Timestamp,
    /// When it is discontinued (at one of its reviews), the end of time if never.
    pub until: Timestamp,
}

/// The shop's products and the popularity law used to pick them.
///
/// The catalogue has a fixed number of *slots*, ranked by popularity; each is held by one
/// product at a time. A product is discontinued at one of its weekly reviews, with the
/// catalogue's per-review probability, and a replacement of the same category, with a new id,
/// a new name and a new price, takes its slot at that instant. Product `id` holds slot
/// `(id - 1) % size`: the slot's first product has id `slot + 1`, each replacement the id of
/// the one before plus `size`. A product's life is drawn from `(seed, id)` alone, so which
/// product holds a slot at any instant is a pure function, which every shopper can ask
/// without coordination.
#[derive(Debug)]
pub struct Catalogue {
    /// The first product of each slot, in id order.
    products: Vec<Product>,
    /// The first products' names, drawn with the catalogue.
    names: Vec<String>,
    /// `by_rank[r]` is the slot of popularity rank `r + 1`.
    by_rank: Vec<usize>,
    popularity: Zipf<f64>,
    seed: u64,
    /// Probability that a product is off its list price for a review period.
    reprice_probability: f64,
    /// Probability that a product is discontinued at one of its reviews.
    discontinue_probability: f64,
}

/// Why a catalogue cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogueError {
    #[error("a catalogue needs at least one product")]
    Empty,
    #[error("the popularity exponent must be a finite number >= 0, got {0}")]
    Exponent(f64),
    #[error("the repricing probability must be between 0 and 1, got {0}")]
    Repricing(f64),
    #[error("the yearly discontinuation rate must be a finite number from 0 to 52, got {0}")]
    Discontinuation(f64),
}

/// How long after a replacement joins the catalogue shoppers can order it: its publication is
/// then surely ahead of any order of it in the stream.
pub const ORDERABLE_AFTER: Duration = Duration::from_secs(60);

/// A list price drawn around a category's median, ending in .99 or .49.
fn list_price<R: rand::Rng + ?Sized>(rng: &mut R, spec: &CategorySpec) -> Money {
    let price = LogNormal::new(spec.median_price.ln(), 0.6)
        .expect("a finite median and a positive sigma make a log-normal law")
        .sample(rng)
        .clamp(1.0, 5_000.0);
    let ending = if rng.random_bool(0.7) { 99 } else { 49 };
    Money::from_cents((price.floor() as i64).max(1) * 100 - 100 + ending)
}

/// A product name: an adjective, a noun of its category and a colour.
fn product_name<R: rand::Rng + ?Sized>(rng: &mut R, spec: &CategorySpec) -> String {
    let noun = spec.nouns[rng.random_range(0..spec.nouns.len())];
    let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
    let colour = COLOURS[rng.random_range(0..COLOURS.len())];
    format!("{adjective} {noun}, {colour}")
}

impl Catalogue {
    /// Builds `size` products from `seed`, in the catalogue from `start`; the product of
    /// popularity rank `r` is drawn with probability proportional to `1 / r^exponent`.
    pub fn generate(
        seed: u64,
        size: usize,
        exponent: f64,
        start: Timestamp,
    ) -> Result<Self, CatalogueError> {
        if size == 0 {
            return Err(CatalogueError::Empty);
        }
        if !exponent.is_finite() || exponent < 0.0 {
            return Err(CatalogueError::Exponent(exponent));
        }
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC47A_1064_0000_0001);
        let (products, names) = (0..size)
            .map(|index| {
                let category_index = index % CATEGORIES.len();
                let spec = &CATEGORIES[category_index];
                let name = product_name(&mut rng, spec);
                let unit_price = list_price(&mut rng, spec);
                let id = index as ProductId + 1;
                let product = Product {
                    id,
                    category_id: category_index as i32 + 1,
                    category: spec.name,
                    unit_price,
                    review_offset: Self::review_offset(seed, id),
                    since: start,
                    until: Timestamp::from_micros(i64::MAX),
                };
                (product, name)
            })
            .unzip();
        let mut by_rank: Vec<usize> = (0..size).collect();
        by_rank.shuffle(&mut rng);
        let popularity =
            Zipf::new(size as f64, exponent).map_err(|_| CatalogueError::Exponent(exponent))?;
        Ok(Self {
            products,
            names,
            by_rank,
            popularity,
            seed,
            reprice_probability: 0.0,
            discontinue_probability: 0.0,
        })
    }

    fn review_offset(seed: u64, id: ProductId) -> i64 {
        let minutes = (REVIEW_PERIOD_MICROS / 60_000_000) as u64;
        (mix(seed, id as u64) % minutes) as i64 * 60_000_000
    }

    /// The same catalogue, with each product off its list price for a review period with
    /// probability `probability` (0, the default, keeps every price fixed).
    pub fn with_repricing(mut self, probability: f64) -> Result<Self, CatalogueError> {
        if !(0.0..=1.0).contains(&probability) {
            return Err(CatalogueError::Repricing(probability));
        }
        self.reprice_probability = probability;
        Ok(self)
    }

    /// The same catalogue, with products discontinued (and replaced) at `per_year` of them a
    /// year: each weekly review discontinues a product with probability `1 - e^(-per_year *
    /// week / year)`. 0, the default, keeps every product forever.
    pub fn with_discontinuation(mut self, per_year: f64) -> Result<Self, CatalogueError> {
        if !(0.0..=52.0).contains(&per_year) {
            return Err(CatalogueError::Discontinuation(per_year));
        }
        let periods_per_year = 365.25 * 86_400.0 / REVIEW_PERIOD.as_secs_f64();
        self.discontinue_probability = 1.0 - (-per_year / periods_per_year).exp();
        for index in 0..self.products.len() {
            let first = self.products[index];
            self.products[index].until = self.end_of(&first);
        }
        Ok(self)
    }

    /// When `product`, in the catalogue from `product.since`, is discontinued: at its k-th
    /// review after that, k drawn from `(seed, id)` (geometric).
    fn end_of(&self, product: &Product) -> Timestamp {
        let q = self.discontinue_probability;
        if q == 0.0 {
            return Timestamp::from_micros(i64::MAX);
        }
        let mut rng = Pcg64Mcg::seed_from_u64(mix(self.seed ^ 0xD15C_0000, product.id as u64));
        let reviews = rand_distr::Geometric::new(q)
            .expect("a probability in (0, 1]")
            .sample(&mut rng)
            .saturating_add(1);
        let first = product.review_offset
            + (Self::period_of(product, product.since) + 1) * REVIEW_PERIOD_MICROS;
        let end = i64::try_from(reviews - 1)
            .ok()
            .and_then(|k| k.checked_mul(REVIEW_PERIOD_MICROS))
            .and_then(|span| span.checked_add(first))
            .unwrap_or(i64::MAX);
        Timestamp::from_micros(end)
    }

    /// The product that takes the slot of `product` when it is discontinued.
    pub fn successor(&self, product: &Product) -> Product {
        let size = self.products.len() as ProductId;
        let id = product.id + size;
        let spec = &CATEGORIES[(product.category_id - 1) as usize];
        let mut rng = Pcg64Mcg::seed_from_u64(mix(self.seed ^ 0x5CCE_5504, id as u64));
        let unit_price = list_price(&mut rng, spec);
        let mut next = Product {
            id,
            category_id: product.category_id,
            category: product.category,
            unit_price,
            review_offset: Self::review_offset(self.seed, id),
            since: product.until,
            until: Timestamp::from_micros(i64::MAX),
        };
        next.until = self.end_of(&next);
        next
    }

    /// The product holding `slot` at `at` (the catalogue's first products before they start).
    fn holder(&self, slot: usize, at: Timestamp) -> Product {
        let mut product = self.products[slot];
        while product.until <= at {
            product = self.successor(&product);
        }
        product
    }

    /// The product's `sku` and `name`.
    pub fn names(&self, product: &Product) -> (String, String) {
        let spec = &CATEGORIES[(product.category_id - 1) as usize];
        let sku = format!("{}-{:06}", &spec.name[..3].to_uppercase(), product.id);
        let slot = ((product.id - 1) as usize) % self.products.len();
        let name = if product.id as usize == slot + 1 {
            self.names[slot].clone()
        } else {
            product_name(
                &mut Pcg64Mcg::seed_from_u64(mix(self.seed ^ 0x5CCE_5505, product.id as u64)),
                spec,
            )
        };
        (sku, name)
    }

    /// The review period of `product` that contains `at`.
    fn period_of(product: &Product, at: Timestamp) -> i64 {
        (at.as_micros() - product.review_offset).div_euclid(REVIEW_PERIOD_MICROS)
    }

    /// The price of `product` during its review period `period`.
    fn price_in(&self, product: &Product, period: i64) -> Money {
        if self.reprice_probability == 0.0 {
            return product.unit_price;
        }
        let h = mix(
            mix(self.seed ^ 0x9E1C_E000, product.id as u64),
            period as u64,
        );
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        if u >= self.reprice_probability {
            return product.unit_price;
        }
        let factor = PRICE_FACTORS[(h & 0xFF) as usize % PRICE_FACTORS.len()];
        // Shop prices end in 9.
        let cents = (product.unit_price.cents() as f64 * factor).round() as i64;
        Money::from_cents(cents - cents.rem_euclid(10) + 9)
    }

    /// The price of `product` at `at`.
    pub fn price(&self, product: &Product, at: Timestamp) -> Money {
        self.price_in(product, Self::period_of(product, at))
    }

    /// The first price review, or discontinuation, of any product strictly after `after`.
    pub fn next_review(&self, after: Timestamp) -> Timestamp {
        let next = (0..self.products.len())
            .map(|slot| {
                let p = self.holder(slot, after);
                p.review_offset + (Self::period_of(&p, after) + 1) * REVIEW_PERIOD_MICROS
            })
            .min()
            .unwrap_or(i64::MAX);
        Timestamp::from_micros(next)
    }

    /// The `products` events of the reviews at exactly `at`: each product discontinued then
    /// (`product_discontinued`, naming its replacement), followed by its replacement
    /// (`product_published`), and each change of a price (`product_repriced`).
    pub fn changes_at(&self, at: Timestamp, currency: CurrencyCode) -> Vec<ProductEvent> {
        let before = Timestamp::from_micros(at.as_micros() - 1);
        let mut events = Vec::new();
        for slot in 0..self.products.len() {
            let p = self.holder(slot, before);
            let period = Self::period_of(&p, at);
            if p.review_offset + period * REVIEW_PERIOD_MICROS != at.as_micros() {
                continue;
            }
            let mut rng = Pcg64Mcg::seed_from_u64(mix(
                mix(self.seed ^ 0x9E1C_E001, p.id as u64),
                period as u64,
            ));
            if p.until == at {
                let next = self.successor(&p);
                let price = self.price_in(&p, period - 1);
                let mut gone = self.event(
                    &p,
                    EventType::ProductDiscontinued,
                    at,
                    price,
                    currency,
                    &mut rng,
                );
                gone.replaced_by = Some(next.id);
                events.push(gone);
                let price = self.price(&next, at);
                events.push(self.event(
                    &next,
                    EventType::ProductPublished,
                    at,
                    price,
                    currency,
                    &mut rng,
                ));
                continue;
            }
            let (price, before) = (self.price_in(&p, period), self.price_in(&p, period - 1));
            if p.since < at && price != before {
                let mut repriced = self.event(
                    &p,
                    EventType::ProductRepriced,
                    at,
                    price,
                    currency,
                    &mut rng,
                );
                repriced.row.previous_price = Some(before);
                events.push(repriced);
            }
        }
        events
    }

    #[allow(clippy::too_many_arguments)]
    fn event<R: rand::Rng + ?Sized>(
        &self,
        p: &Product,
        event_type: EventType,
        at: Timestamp,
        unit_price: Money,
        currency: CurrencyCode,
        rng: &mut R,
    ) -> ProductEvent {
        let (sku, name) = self.names(p);
        ProductEvent {
            event_id: new_event_id(rng),
            event_type,
            event_time: at.truncate_to_millis(),
            product_id: p.id,
            sku,
            name,
            category_id: p.category_id,
            category: p.category,
            unit_price,
            currency,
            replaced_by: None,
            row: ProductRowContext {
                created_at: p.since.truncate_to_millis(),
                previous_price: None,
                snapshot: false,
            },
        }
    }

    /// The names of the categories products belong to.
    pub fn category_names() -> impl Iterator<Item = &'static str> {
        CATEGORIES.iter().map(|c| c.name)
    }

    /// The catalogue's first products, in id order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// How many products the catalogue holds at any time.
    pub fn size(&self) -> usize {
        self.products.len()
    }

    /// The category of product `id`, any product that ever was in the catalogue.
    pub fn category_of(&self, id: ProductId) -> Option<&'static str> {
        let slot = usize::try_from(id - 1).ok()? % self.products.len();
        Some(self.products[slot].category)
    }

    /// The product with this id, if it ever is in the catalogue: one of the first products,
    /// or a replacement.
    pub fn get(&self, id: ProductId) -> Option<Product> {
        let slot = usize::try_from(id - 1).ok()? % self.products.len();
        let mut product = self.products[slot];
        while product.id < id && product.until.as_micros() < i64::MAX {
            product = self.successor(&product);
        }
        (product.id == id).then_some(product)
    }

    /// Draws, by popularity, a product that can be ordered at `at`: the holder of a slot drawn
    /// by rank, unless it joined the catalogue less than [`ORDERABLE_AFTER`] before (then
    /// another draw).
    pub fn pick<R: rand::Rng + ?Sized>(&self, rng: &mut R, at: Timestamp) -> Product {
        loop {
            // Zipf yields ranks 1..=n as floats.
            let rank = (self.popularity.sample(rng) as usize).clamp(1, self.by_rank.len());
            let slot = self.by_rank[rank - 1];
            let first = &self.products[slot];
            if at < first.until {
                // The common case: the slot's first product, in the catalogue from the start.
                return *first;
            }
            let product = self.holder(slot, at);
            if product.since + ORDERABLE_AFTER <= at {
                return product;
            }
        }
    }

    /// The popularity rank (1 = best seller) of a product's slot.
    pub fn rank_of(&self, id: ProductId) -> Option<usize> {
        let slot = usize::try_from(id - 1).ok()? % self.products.len();
        self.by_rank.iter().position(|&i| i == slot).map(|r| r + 1)
    }

    /// The `products` events that publish the catalogue as it is at `at`, at the prices of
    /// that instant.
    pub fn publish(&self, at: Timestamp, seed: u64, currency: CurrencyCode) -> Vec<ProductEvent> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC47A_1064_0000_0002);
        (0..self.products.len())
            .map(|slot| {
                let p = self.holder(slot, at);
                let price = self.price(&p, at);
                let mut published = self.event(
                    &p,
                    EventType::ProductPublished,
                    at,
                    price,
                    currency,
                    &mut rng,
                );
                published.row.snapshot = true;
                published
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Timestamp = Timestamp::from_micros(1_750_000_000_000_000);

    #[test]
    fn same_seed_same_catalogue() {
        let a = Catalogue::generate(7, 50, 1.1, START).unwrap();
        let b = Catalogue::generate(7, 50, 1.1, START).unwrap();
        let c = Catalogue::generate(8, 50, 1.1, START).unwrap();
        assert_eq!(a.products(), b.products());
        assert_ne!(a.products(), c.products());
        assert!(a.products().iter().all(|p| p.unit_price.cents() > 0));
        assert_eq!(a.get(50).unwrap().id, 50);
        assert!(a.get(51).is_none() && a.get(0).is_none());
    }

    #[test]
    fn popularity_is_skewed_towards_low_ranks() {
        let catalogue = Catalogue::generate(1, 200, 1.1, START).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let mut counts = vec![0u32; 201];
        for _ in 0..50_000 {
            counts[catalogue.pick(&mut rng, START).id as usize] += 1;
        }
        let mut by_rank: Vec<u32> = (1..=200)
            .map(|id| counts[catalogue.products()[catalogue.by_rank[id - 1]].id as usize])
            .collect();
        let top10: u32 = by_rank[..10].iter().sum();
        // Under Zipf(200, 1.1) the top 10 ranks hold about 57% of the draws.
        assert!(
            (26_000..31_000).contains(&top10),
            "top 10 ranks drew {top10} of 50000"
        );
        by_rank.sort_unstable();
        assert!(by_rank[0] < 100, "the least popular product is rare");
    }

    #[test]
    fn prices_change_only_at_reviews_and_each_change_is_published() {
        let catalogue = Catalogue::generate(5, 200, 1.1, START)
            .unwrap()
            .with_repricing(0.3)
            .unwrap();
        let start = START;
        let end = start + REVIEW_PERIOD * 8;
        let mut current: Vec<Money> = catalogue
            .products()
            .iter()
            .map(|p| catalogue.price(p, start))
            .collect();
        let (mut at, mut changes, mut reviews, mut off) = (start, 0u64, 0u64, 0u64);
        loop {
            let next = catalogue.next_review(at);
            assert!(next > at);
            if next >= end {
                break;
            }
            // Nothing changes strictly between two reviews.
            let before = next.add_micros_f64(-1.0);
            for (p, price) in catalogue.products().iter().zip(&current) {
                assert_eq!(catalogue.price(p, before), *price);
            }
            for event in catalogue.changes_at(next, CurrencyCode::USD) {
                let p = catalogue.get(event.product_id).unwrap();
                assert_eq!(event.event_type, EventType::ProductRepriced);
                assert_eq!(event.unit_price, catalogue.price(&p, next));
                assert_ne!(event.unit_price, current[p.id as usize - 1]);
                assert_eq!(event.unit_price.cents() % 10, 9, "prices end in 9");
                current[p.id as usize - 1] = event.unit_price;
                changes += 1;
            }
            reviews += catalogue
                .products()
                .iter()
                .filter(|p| Catalogue::period_of(p, next) != Catalogue::period_of(p, before))
                .count() as u64;
            at = next;
        }
        for (p, price) in catalogue.products().iter().zip(&current) {
            assert_eq!(catalogue.price(p, at), *price, "every change was published");
            off += u64::from(*price != p.unit_price);
        }
        // About 8 reviews per product; a review changes the price with probability
        // 2 p (1 - p) + p^2 (5/6) = 0.495 at p = 0.3.
        assert!((1_590..1_610).contains(&reviews), "{reviews} reviews");
        let expected = reviews as f64 * 0.495;
        let se = (reviews as f64 * 0.495 * 0.505).sqrt();
        assert!(
            (changes as f64 - expected).abs() < 4.0 * se,
            "{changes} changes, expected {expected:.0}"
        );
        assert!(
            (20..110).contains(&off),
            "{off} of 200 off their list price"
        );
    }

    #[test]
    fn without_repricing_prices_never_change() {
        let catalogue = Catalogue::generate(5, 50, 1.1, START).unwrap();
        let at = START + REVIEW_PERIOD * 3;
        assert!(
            catalogue
                .products()
                .iter()
                .all(|p| catalogue.price(p, at) == p.unit_price)
        );
        assert!(
            catalogue
                .changes_at(catalogue.next_review(at), CurrencyCode::USD)
                .is_empty()
        );
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(
            Catalogue::generate(1, 10, 1.0, START)
                .unwrap()
                .with_repricing(1.5)
                .is_err()
        );
        assert_eq!(
            Catalogue::generate(1, 0, 1.0, START).unwrap_err(),
            CatalogueError::Empty
        );
        assert!(Catalogue::generate(1, 10, f64::NAN, START).is_err());
        assert!(Catalogue::generate(1, 10, -1.0, START).is_err());
        assert!(
            Catalogue::generate(1, 10, 1.0, START)
                .unwrap()
                .with_discontinuation(-0.1)
                .is_err()
        );
    }

    #[test]
    fn discontinued_products_are_replaced_and_never_picked_again() {
        let catalogue = Catalogue::generate(9, 100, 1.0, START)
            .unwrap()
            .with_repricing(0.2)
            .unwrap()
            .with_discontinuation(2.0)
            .unwrap();
        let end = START + REVIEW_PERIOD * 52;
        // Every product ever in the catalogue, from its events: id -> (since, until).
        let mut lives: std::collections::HashMap<ProductId, (Timestamp, Option<Timestamp>)> =
            catalogue
                .publish(START, 9, CurrencyCode::USD)
                .iter()
                .map(|e| (e.product_id, (START, None)))
                .collect();
        let (mut at, mut discontinued) = (START, 0);
        loop {
            at = catalogue.next_review(at);
            if at >= end {
                break;
            }
            let events = catalogue.changes_at(at, CurrencyCode::USD);
            for pair in events.windows(2) {
                if pair[0].event_type == EventType::ProductDiscontinued {
                    let next = &pair[1];
                    assert_eq!(pair[0].replaced_by, Some(next.product_id));
                    assert_eq!(next.event_type, EventType::ProductPublished);
                    assert_eq!(
                        next.product_id,
                        pair[0].product_id + 100,
                        "the slot's next id"
                    );
                    assert_eq!(next.category, pair[0].category, "the same category");
                    assert_ne!(next.name, "");
                }
            }
            for event in &events {
                match event.event_type {
                    EventType::ProductDiscontinued => {
                        discontinued += 1;
                        let life = lives.get_mut(&event.product_id).expect("published before");
                        assert!(life.1.is_none(), "discontinued once");
                        life.1 = Some(at);
                        assert_eq!(catalogue.get(event.product_id).unwrap().until, at);
                    }
                    EventType::ProductPublished => {
                        assert!(lives.insert(event.product_id, (at, None)).is_none());
                        let product = catalogue.get(event.product_id).unwrap();
                        assert_eq!(product.since, at);
                        assert_eq!(catalogue.price(&product, at), event.unit_price);
                    }
                    EventType::ProductRepriced => {
                        let life = lives[&event.product_id];
                        assert!(life.0 < at && life.1.is_none(), "repriced while on sale");
                    }
                    _ => unreachable!(),
                }
            }
        }
        // At 2 a year per slot (replacements go at the same rate), about 200 went in the year.
        assert!(
            (160..240).contains(&discontinued),
            "{discontinued} discontinued"
        );
        // Shoppers only ever get a product on sale for at least a minute.
        let mut rng = Pcg64Mcg::seed_from_u64(4);
        for step in 0..20_000 {
            let t = START + REVIEW_PERIOD * 52 * step / 20_000;
            let product = catalogue.pick(&mut rng, t);
            let (since, until) = lives[&product.id];
            assert!(
                since + ORDERABLE_AFTER <= t || since == START,
                "{product:?} at {t}"
            );
            assert!(until.is_none_or(|until| t < until), "{product:?} at {t}");
        }
    }
}
