//! How an order's amounts are computed from its lines.

use super::{CurrencyCode, Money, OrderLine};

/// The shop's pricing rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopRules {
    /// ISO 4217 code of the shop's currency.
    pub currency: CurrencyCode,
    /// Sales tax, as a fraction of the discounted subtotal.
    pub tax_rate: f64,
    /// Flat shipping fee charged below the free-shipping threshold.
    pub shipping_fee: Money,
    /// Discounted subtotals at or above this ship free.
    pub free_shipping_threshold: Money,
}

/// The amounts of an order. Always `total = subtotal - discount + tax + shipping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderTotals {
    #[serde(with = "super::money::cents")]
    pub subtotal: Money,
    #[serde(with = "super::money::cents")]
    pub discount: Money,
    #[serde(with = "super::money::cents")]
    pub tax: Money,
    #[serde(with = "super::money::cents")]
    pub shipping: Money,
    #[serde(with = "super::money::cents")]
    pub total: Money,
}

impl ShopRules {
    /// Prices an order: `subtotal` is the sum of the line totals; the discount is the fraction
    /// `discount_rate` of it (a coupon, 0 for none) plus `promotional` (a promotion's markdown),
    /// at most the subtotal; tax applies to the discounted subtotal.
    pub fn price(
        &self,
        lines: &[OrderLine],
        discount_rate: f64,
        promotional: Money,
    ) -> OrderTotals {
        let subtotal: Money = lines.iter().map(|l| l.line_total).sum();
        let discount = (subtotal.scale(discount_rate.clamp(0.0, 1.0)) + promotional).min(subtotal);
        let taxable = subtotal - discount;
        let tax = taxable.scale(self.tax_rate);
        let shipping = if taxable >= self.free_shipping_threshold {
            Money::ZERO
        } else {
            self.shipping_fee
        };
        OrderTotals {
            subtotal,
            discount,
            tax,
            shipping,
            total: taxable + tax + shipping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ShopRules {
        ShopRules {
            currency: CurrencyCode::USD,
            tax_rate: 0.0825,
            shipping_fee: Money::from_cents(599),
            free_shipping_threshold: Money::from_cents(5000),
        }
    }

    fn line(quantity: i32, cents: i64) -> OrderLine {
        OrderLine {
            line_number: 1,
            product_id: 1,
            quantity,
            unit_price: Money::from_cents(cents),
            line_total: Money::from_cents(cents) * i64::from(quantity),
        }
    }

    #[test]
    fn small_order_pays_shipping_and_tax() {
        let t = rules().price(&[line(2, 1099), line(1, 499)], 0.0, Money::ZERO);
        assert_eq!(t.subtotal, Money::from_cents(2697));
        assert_eq!(t.tax, Money::from_cents(223)); // 26.97 * 0.0825 = 2.225 -> 2.23
        assert_eq!(t.shipping, Money::from_cents(599));
        assert_eq!(t.total, Money::from_cents(2697 + 223 + 599));
    }

    #[test]
    fn discount_applies_before_tax_and_threshold() {
        let t = rules().price(&[line(1, 5500)], 0.10, Money::ZERO);
        assert_eq!(t.discount, Money::from_cents(550));
        // 49.50 after discount: below the threshold, so shipping is charged.
        assert_eq!(t.shipping, Money::from_cents(599));
        assert_eq!(t.tax, Money::from_cents(408)); // 49.50 * 0.0825 = 4.08375
        assert_eq!(t.total, t.subtotal - t.discount + t.tax + t.shipping);
    }

    #[test]
    fn promotional_markdowns_add_to_the_coupon_up_to_the_subtotal() {
        let t = rules().price(&[line(1, 5500)], 0.10, Money::from_cents(1000));
        assert_eq!(t.discount, Money::from_cents(1550));
        let all = rules().price(&[line(1, 5500)], 0.5, Money::from_cents(4000));
        assert_eq!(all.discount, all.subtotal);
        assert_eq!(all.total, all.tax + all.shipping);
    }
}
