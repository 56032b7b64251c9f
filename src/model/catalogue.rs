//! The product catalogue: categories, products and how popular each product is.
//!
//! The catalogue is a pure function of its seed and size, built once at start and shared by all
//! shoppers. Popularity follows a Zipf law over a seeded permutation of the products, so a few
//! products sell most, in every category.

use rand::{RngExt, SeedableRng, seq::SliceRandom};
use rand_distr::{Distribution, LogNormal, Zipf};
use rand_pcg::Pcg64Mcg;

use super::{Money, ProductEvent, ProductId, Timestamp, new_event_id};

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
    pub unit_price: Money,
}

/// The shop's products and the popularity law used to pick them.
#[derive(Debug)]
pub struct Catalogue {
    products: Vec<Product>,
    /// `by_rank[r]` is the index in `products` of the product of popularity rank `r + 1`.
    by_rank: Vec<usize>,
    popularity: Zipf<f64>,
}

/// Why a catalogue cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogueError {
    #[error("a catalogue needs at least one product")]
    Empty,
    #[error("the popularity exponent must be a finite number >= 0, got {0}")]
    Exponent(f64),
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
                Product {
                    id,
                    sku: format!("{}-{id:06}", &spec.name[..3].to_uppercase()),
                    name: format!("{adjective} {noun}, {colour}"),
                    category_id: category_index as i32 + 1,
                    category: spec.name,
                    unit_price,
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
        })
    }

    /// All products, in id order.
    /// The names of the categories products belong to.
    pub fn category_names() -> impl Iterator<Item = &'static str> {
        CATEGORIES.iter().map(|c| c.name)
    }

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

    /// The `products` events that publish the catalogue at `at`.
    pub fn publish(&self, at: Timestamp, seed: u64, currency: &'static str) -> Vec<ProductEvent> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC47A_1064_0000_0002);
        self.products
            .iter()
            .map(|p| ProductEvent {
                event_id: new_event_id(&mut rng),
                event_type: "product_published",
                event_time: at.truncate_to_millis(),
                product_id: p.id,
                sku: p.sku.clone(),
                name: p.name.clone(),
                category_id: p.category_id,
                category: p.category,
                unit_price: p.unit_price,
                currency,
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
    fn rejects_bad_parameters() {
        assert_eq!(
            Catalogue::generate(1, 0, 1.0).unwrap_err(),
            CatalogueError::Empty
        );
        assert!(Catalogue::generate(1, 10, f64::NAN).is_err());
        assert!(Catalogue::generate(1, 10, -1.0).is_err());
    }
}
