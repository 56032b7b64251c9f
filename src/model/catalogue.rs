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
    CurrencyCode, EventType, Money, ProductEvent, ProductId, Timestamp, mix, new_event_id,
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

/// A product as the catalogue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub category_id: i32,
    pub category: &'static str,
    /// The list price.
    pub unit_price: Money,
    /// When in each review period the price is reviewed (microseconds, a whole minute).
    review_offset: i64,
}

/// The shop's products and the popularity law used to pick them.
#[derive(Debug)]
pub struct Catalogue {
    products: Vec<Product>,
    /// `by_rank[r]` is the index in `products` of the product of popularity rank `r + 1`.
    by_rank: Vec<usize>,
    popularity: Zipf<f64>,
    seed: u64,
    /// Probability that a product is off its list price for a review period.
    reprice_probability: f64,
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
}

impl Catalogue {
    /// Builds `size` products from `seed`; the product of popularity rank `r` is drawn with
    /// probability proportional to `1 / r^exponent`.
    pub fn generate(seed: u64, size: usize, exponent: f64) -> Result<Self, CatalogueError> {
        if size == 0 {
            return Err(CatalogueError::Empty);
        }
        if !exponent.is_finite() || exponent < 0.0 {
            return Err(CatalogueError::Exponent(exponent));
        }
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC47A_1064_0000_0001);
        let products = (0..size)
            .map(|index| {
                let category_index = index % CATEGORIES.len();
                let spec = &CATEGORIES[category_index];
                let noun = spec.nouns[rng.random_range(0..spec.nouns.len())];
                let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
                let colour = COLOURS[rng.random_range(0..COLOURS.len())];
                let price = LogNormal::new(spec.median_price.ln(), 0.6)
                    .expect("a finite median and a positive sigma make a log-normal law")
                    .sample(&mut rng)
                    .clamp(1.0, 5_000.0);
                // Shop prices end in .99 or .49.
                let ending = if rng.random_bool(0.7) { 99 } else { 49 };
                let unit_price =
                    Money::from_cents((price.floor() as i64).max(1) * 100 - 100 + ending);
                let id = index as ProductId + 1;
                let minutes = (REVIEW_PERIOD_MICROS / 60_000_000) as u64;
                let review_offset = (mix(seed, id as u64) % minutes) as i64 * 60_000_000;
                Product {
                    id,
                    sku: format!("{}-{id:06}", &spec.name[..3].to_uppercase()),
                    name: format!("{adjective} {noun}, {colour}"),
                    category_id: category_index as i32 + 1,
                    category: spec.name,
                    unit_price,
                    review_offset,
                }
            })
            .collect();
        let mut by_rank: Vec<usize> = (0..size).collect();
        by_rank.shuffle(&mut rng);
        let popularity =
            Zipf::new(size as f64, exponent).map_err(|_| CatalogueError::Exponent(exponent))?;
        Ok(Self {
            products,
            by_rank,
            popularity,
            seed,
            reprice_probability: 0.0,
        })
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

    /// The first price review of any product strictly after `after`.
    pub fn next_review(&self, after: Timestamp) -> Timestamp {
        let next = self
            .products
            .iter()
            .map(|p| p.review_offset + (Self::period_of(p, after) + 1) * REVIEW_PERIOD_MICROS)
            .min()
            .unwrap_or(i64::MAX);
        Timestamp::from_micros(next)
    }

    /// The `products` events of the reviews at exactly `at` that change a price.
    pub fn repriced_at(&self, at: Timestamp, currency: CurrencyCode) -> Vec<ProductEvent> {
        self.products
            .iter()
            .filter_map(|p| {
                let period = Self::period_of(p, at);
                let starts = p.review_offset + period * REVIEW_PERIOD_MICROS;
                let price = self.price_in(p, period);
                (starts == at.as_micros() && price != self.price_in(p, period - 1)).then(|| {
                    let mut rng = Pcg64Mcg::seed_from_u64(mix(
                        mix(self.seed ^ 0x9E1C_E001, p.id as u64),
                        period as u64,
                    ));
                    Self::event(
                        p,
                        EventType::ProductRepriced,
                        at,
                        price,
                        new_event_id(&mut rng),
                        currency,
                    )
                })
            })
            .collect()
    }

    fn event(
        p: &Product,
        event_type: EventType,
        at: Timestamp,
        unit_price: Money,
        event_id: uuid::Uuid,
        currency: CurrencyCode,
    ) -> ProductEvent {
        ProductEvent {
            event_id,
            event_type,
            event_time: at.truncate_to_millis(),
            product_id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            category_id: p.category_id,
            category: p.category,
            unit_price,
            currency,
        }
    }

    /// The names of the categories products belong to.
    pub fn category_names() -> impl Iterator<Item = &'static str> {
        CATEGORIES.iter().map(|c| c.name)
    }

    /// All products, in id order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The product with this id, if the catalogue has it.
    pub fn get(&self, id: ProductId) -> Option<&Product> {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| self.products.get(i))
    }

    /// Draws a product by popularity.
    pub fn pick<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> &Product {
        // Zipf yields ranks 1..=n as floats.
        let rank = (self.popularity.sample(rng) as usize).clamp(1, self.by_rank.len());
        &self.products[self.by_rank[rank - 1]]
    }

    /// The popularity rank (1 = best seller) of a product.
    pub fn rank_of(&self, id: ProductId) -> Option<usize> {
        let index = usize::try_from(id - 1).ok()?;
        self.by_rank.iter().position(|&i| i == index).map(|r| r + 1)
    }

    /// The `products` events that publish the catalogue at `at`, at the prices of that instant.
    pub fn publish(&self, at: Timestamp, seed: u64, currency: CurrencyCode) -> Vec<ProductEvent> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC47A_1064_0000_0002);
        self.products
            .iter()
            .map(|p| {
                let price = self.price(p, at);
                Self::event(
                    p,
                    EventType::ProductPublished,
                    at,
                    price,
                    new_event_id(&mut rng),
                    currency,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_catalogue() {
        let a = Catalogue::generate(7, 50, 1.1).unwrap();
        let b = Catalogue::generate(7, 50, 1.1).unwrap();
        let c = Catalogue::generate(8, 50, 1.1).unwrap();
        assert_eq!(a.products(), b.products());
        assert_ne!(a.products(), c.products());
        assert!(a.products().iter().all(|p| p.unit_price.cents() > 0));
        assert_eq!(a.get(50).unwrap().id, 50);
        assert!(a.get(51).is_none() && a.get(0).is_none());
    }

    #[test]
    fn popularity_is_skewed_towards_low_ranks() {
        let catalogue = Catalogue::generate(1, 200, 1.1).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let mut counts = vec![0u32; 201];
        for _ in 0..50_000 {
            counts[catalogue.pick(&mut rng).id as usize] += 1;
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
        let catalogue = Catalogue::generate(5, 200, 1.1)
            .unwrap()
            .with_repricing(0.3)
            .unwrap();
        let start = Timestamp::from_micros(1_750_000_000_000_000);
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
            for event in catalogue.repriced_at(next, CurrencyCode::USD) {
                let p = catalogue.get(event.product_id).unwrap();
                assert_eq!(event.event_type, EventType::ProductRepriced);
                assert_eq!(event.unit_price, catalogue.price(p, next));
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
        let catalogue = Catalogue::generate(5, 50, 1.1).unwrap();
        let at = Timestamp::from_micros(1_750_000_000_000_000) + REVIEW_PERIOD * 3;
        assert!(
            catalogue
                .products()
                .iter()
                .all(|p| catalogue.price(p, at) == p.unit_price)
        );
        assert!(
            catalogue
                .repriced_at(catalogue.next_review(at), CurrencyCode::USD)
                .is_empty()
        );
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(
            Catalogue::generate(1, 10, 1.0)
                .unwrap()
                .with_repricing(1.5)
                .is_err()
        );
        assert_eq!(
            Catalogue::generate(1, 0, 1.0).unwrap_err(),
            CatalogueError::Empty
        );
        assert!(Catalogue::generate(1, 10, f64::NAN).is_err());
        assert!(Catalogue::generate(1, 10, -1.0).is_err());
    }
}
