"""The simulator's Avro schemas, and the two ways of decoding its messages in Spark.

`SparkAvroDecoder` is what runs on Databricks: `from_avro` in PERMISSIVE mode, which yields a
null struct for a value it cannot decode. `FastavroDecoder` does the same with fastavro in a
Python UDF, for local Spark, whose PyPI distribution lacks spark-avro; its output type is
`spark_type(schema)`, which the tests hold equal to what `from_avro` produces (Spark's own
`SchemaConverters`). Both decode the plain Avro datum; the Confluent framing's 5-byte prefix is
removed before (see `transform.payload`).
"""

from __future__ import annotations

import io
import json
from functools import cache
from importlib import resources
from typing import Any, Protocol

from pyspark.sql import Column
from pyspark.sql import types as T


@cache
def schema_json(entity: str) -> str:
    """The `.avsc` text of a topic entity (`customers`, `products`, `orders`, `payments`)."""
    return resources.files(__package__).joinpath("schemas", f"{entity}.avsc").read_text()


def spark_type(schema: Any) -> T.DataType:
    """The Spark type of an Avro schema, as Spark's SchemaConverters derives it for the
    simulator's schemas (records, arrays, strings, ints, longs, nullable unions, and the
    logical types uuid, timestamp-millis and decimal)."""
    data_type, _ = _convert(schema if not isinstance(schema, str) else json.loads(schema))
    return data_type


def _convert(schema: Any) -> tuple[T.DataType, bool]:
    if isinstance(schema, list):  # union: only ["null", X] occurs
        branches = [s for s in schema if s != "null"]
        if len(branches) != 1 or len(schema) != 2:
            raise ValueError(f"unsupported union {schema}")
        return _convert(branches[0])[0], True
    if isinstance(schema, str):
        schema = {"type": schema}
    kind, logical = schema["type"], schema.get("logicalType")
    if isinstance(kind, (dict, list)):
        return _convert(kind)
    if kind == "record":
        fields = []
        for field in schema["fields"]:
            data_type, nullable = _convert(field["type"])
            fields.append(T.StructField(field["name"], data_type, nullable))
        return T.StructType(fields), False
    if kind == "array":
        element, nullable = _convert(schema["items"])
        return T.ArrayType(element, nullable), False
    if kind == "bytes" and logical == "decimal":
        return T.DecimalType(schema["precision"], schema.get("scale", 0)), False
    if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
        return T.TimestampType(), False
    simple = {"string": T.StringType(), "long": T.LongType(), "int": T.IntegerType(),
              "bytes": T.BinaryType(), "boolean": T.BooleanType(), "double": T.DoubleType(),
              "float": T.FloatType()}
    if kind in simple:
        return simple[kind], False
    raise ValueError(f"unsupported Avro type {kind}")


class Decoder(Protocol):
    def decode(self, payload: Column, entity: str) -> Column:
        """A column of the decoded record (a struct), null where `payload` is not a datum of
        the entity's schema."""


class SparkAvroDecoder:
    """`from_avro` from spark-avro, bundled with the Databricks runtime."""

    def decode(self, payload: Column, entity: str) -> Column:
        from pyspark.sql.avro.functions import from_avro

        return from_avro(payload, schema_json(entity), {"mode": "PERMISSIVE"})


class FastavroDecoder:
    """fastavro in a Python UDF, with the output type `from_avro` would give."""

    def decode(self, payload: Column, entity: str) -> Column:
        from pyspark.sql.functions import udf

        schema_text = schema_json(entity)
        return udf(_fastavro_decoder(schema_text), spark_type(schema_text))(payload)


def _fastavro_decoder(schema_text: str):
    def decode(value: bytes | None):
        import fastavro

        if value is None:
            return None
        try:
            return _plain(fastavro.schemaless_reader(io.BytesIO(value), _parsed(schema_text)))
        except Exception:  # noqa: BLE001 - any decoding failure is a corrupt value, as in PERMISSIVE mode
            return None

    return decode


@cache
def _parsed(schema_text: str):
    import fastavro

    return fastavro.parse_schema(json.loads(schema_text))


def _plain(value: Any) -> Any:
    """fastavro's logical values as Spark takes them (a UUID becomes its text)."""
    import uuid

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
