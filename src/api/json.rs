//! Records as JSON, in the form the `stdout` sink writes them: the topic first, then the
//! fields in schema order; amounts (Avro decimals) as decimal text, instants as RFC 3339 text,
//! UUIDs as text, a union as the value it holds.

use std::io::Write;

use apache_avro::Schema;
use apache_avro::schema::UnionSchema;
use apache_avro::types::Value;

use crate::model::Timestamp;

/// Writes `record` (of `schema`) as one JSON object, with `"topic": topic` first.
pub fn write_record(out: &mut Vec<u8>, topic: &str, schema: &Schema, record: &Value) {
    let Value::Record(fields) = record else {
        write_value(out, schema, record);
        return;
    };
    out.extend_from_slice(b"{\"topic\":");
    write_string(out, topic);
    write_fields(out, schema, fields, true);
    out.push(b'}');
}

/// Writes a record's fields as `"name":value` pairs separated by commas (with one before the
/// first when `after_another`).
fn write_fields(
    out: &mut Vec<u8>,
    schema: &Schema,
    fields: &[(String, Value)],
    after_another: bool,
) {
    let field_schemas = match schema {
        Schema::Record(r) => Some(&r.fields),
        _ => None,
    };
    for (index, (name, value)) in fields.iter().enumerate() {
        if after_another || index > 0 {
            out.push(b',');
        }
        write_string(out, name);
        out.push(b':');
        let field_schema = field_schemas.and_then(|f| f.get(index)).map(|f| &f.schema);
        write_value(out, field_schema.unwrap_or(&Schema::Null), value);
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to memory");
}

/// The variant of `union` a value of it holds.
fn variant(union: &UnionSchema, index: u32) -> &Schema {
    union
        .variants()
        .get(index as usize)
        .unwrap_or(&Schema::Null)
}

fn write_value(out: &mut Vec<u8>, schema: &Schema, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Long(n) | Value::TimeMicros(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(x) => write_number(out, f64::from(*x)),
        Value::Double(x) => write_number(out, *x),
        Value::String(s) | Value::Enum(_, s) => write_string(out, s),
        Value::Uuid(id) => write_string(out, &id.hyphenated().to_string()),
        Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => {
            write_string(
                out,
                &Timestamp::from_micros(ms.saturating_mul(1000)).to_string(),
            );
        }
        Value::TimestampMicros(us) | Value::LocalTimestampMicros(us) => {
            write_string(out, &Timestamp::from_micros(*us).to_string());
        }
        Value::Decimal(decimal) => {
            let scale = match schema {
                Schema::Decimal(d) => d.scale,
                _ => 0,
            };
            let bytes = Vec::<u8>::try_from(decimal).unwrap_or_default();
            write_string(out, &decimal_text(&bytes, scale));
        }
        Value::Union(index, inner) => {
            let inner_schema = match schema {
                Schema::Union(union) => variant(union, *index),
                other => other,
            };
            write_value(out, inner_schema, inner);
        }
        Value::Array(items) => {
            let item_schema = match schema {
                Schema::Array(a) => a.items.as_ref(),
                _ => &Schema::Null,
            };
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item_schema, item);
            }
            out.push(b']');
        }
        Value::Record(fields) => {
            out.push(b'{');
            write_fields(out, schema, fields, false);
            out.push(b'}');
        }
        Value::Map(entries) => {
            let value_schema = match schema {
                Schema::Map(m) => m.types.as_ref(),
                _ => &Schema::Null,
            };
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, value_schema, &entries[key]);
            }
            out.push(b'}');
        }
        // Types the shop's schemas do not use: their Avro JSON form.
        other => {
            let json = serde_json::Value::try_from(other.clone()).unwrap_or_default();
            serde_json::to_writer(&mut *out, &json).expect("writing to memory");
        }
    }
}

fn write_number(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        serde_json::to_writer(&mut *out, &x).expect("writing to memory");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// The text of a decimal from its big-endian two's-complement bytes and its scale: `12.50`.
fn decimal_text(bytes: &[u8], scale: usize) -> String {
    if bytes.is_empty() {
        return if scale == 0 {
            "0".into()
        } else {
            format!("0.{}", "0".repeat(scale))
        };
    }
    // Sign-extend into 16 bytes; longer values keep their lowest 16 (never in the shop's
    // schemas, whose precision is 12).
    let negative = bytes[0] & 0x80 != 0;
    let mut wide = [if negative { 0xff } else { 0 }; 16];
    let take = bytes.len().min(16);
    wide[16 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    let unscaled = i128::from_be_bytes(wide);
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_with_their_scale() {
        assert_eq!(decimal_text(&[0x04, 0xe2], 2), "12.50");
        assert_eq!(decimal_text(&[0xfb, 0x1e], 2), "-12.50");
        assert_eq!(decimal_text(&[0x05], 2), "0.05");
        assert_eq!(decimal_text(&[0xff], 2), "-0.01");
        assert_eq!(decimal_text(&[], 2), "0.00");
        assert_eq!(decimal_text(&[0x07], 0), "7");
    }

    #[test]
    fn a_record_is_the_stdout_sinks_object() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"P","fields":[
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
                {"name":"reason","type":["null","string"]}]}"#,
        )
        .unwrap();
        let record = Value::Record(vec![
            ("at".into(), Value::TimestampMillis(1_772_409_600_123)),
            (
                "amount".into(),
                Value::Decimal(apache_avro::Decimal::from(vec![0x04, 0xe2])),
            ),
            (
                "reason".into(),
                Value::Union(1, Box::new(Value::String("x\"y".into()))),
            ),
        ]);
        let mut out = Vec::new();
        write_record(&mut out, "payments", &schema, &record);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"topic":"payments","at":"2026-03-02T00:00:00.123Z","amount":"12.50","reason":"x\"y"}"#
        );
    }
}
