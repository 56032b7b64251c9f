"""The Databricks job: every hour, load everything new on the simulator's topics into Synapse.

A Structured Streaming query over the four topics with `trigger(availableNow=True)`: each run
reads from where the previous one stopped (its checkpoint), in micro-batches of at most
`--max-offsets-per-trigger` messages, hands each to `load_batch`, and stops.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from .avro import SparkAvroDecoder
from .loader import ON_UNDECODABLE, Settings, load_batch
from .session import configure
from .tables import ENTITIES
from .transform import FRAMINGS
from .warehouse import SynapseWarehouse, check_schema, jdbc_connector

JAAS_LOGIN = "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule"
ENDPOINT = re.compile(r"^Endpoint=sb://(?P<host>[A-Za-z0-9.-]+)/?$", re.IGNORECASE)


class ConfigError(ValueError):
    """A setting of the job is wrong; the message names it and never holds a secret."""


def event_hubs_bootstrap(connection_string: str) -> str:
    """`<namespace>.servicebus.windows.net:9093` from an Event Hubs connection string, which
    is checked without ever being echoed."""
    parts = [p for p in connection_string.strip().split(";") if p]
    endpoint = next((ENDPOINT.match(p) for p in parts if p.lower().startswith("endpoint=")), None)
    keys = {p.split("=", 1)[0].lower() for p in parts if "=" in p}
    if endpoint is None:
        raise ConfigError("the Event Hubs connection string has no Endpoint=sb://<namespace>.servicebus.windows.net/")
    if not {"sharedaccesskeyname", "sharedaccesskey"} <= keys:
        raise ConfigError("the Event Hubs connection string lacks SharedAccessKeyName or SharedAccessKey")
    if any(c in connection_string for c in '"\\\n'):
        raise ConfigError("the Event Hubs connection string holds a quote, backslash or line break")
    return f"{endpoint.group('host')}:9093"


NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*$")


def namespace_host(namespace: str) -> str:
    """`<name>` or `<name>.servicebus.windows.net` as the namespace's host name."""
    host = namespace.strip().lower().rstrip("/")
    if not NAMESPACE.match(host):
        raise ConfigError(f"--eventhubs-namespace {namespace!r} is not an Event Hubs namespace "
                          "(<name> or <name>.servicebus.windows.net)")
    return host if "." in host else f"{host}.servicebus.windows.net"


def kafka_options(
    topics: dict[str, str],
    *,
    connection_string: str | None = None,
    bootstrap_servers: str | None = None,
    service_credential: str | None = None,
    namespace: str | None = None,
    max_offsets_per_trigger: int = 1_000_000,
) -> dict[str, str]:
    """The Kafka source's options: Event Hubs' Kafka endpoint with SASL PLAIN and the
    connection string, or with a Unity Catalog service credential (Microsoft Entra ID through
    the credential's access connector, DBR 16.1+), or a plain Kafka cluster's bootstrap
    servers."""
    options = {
        "subscribe": ",".join(topics[e] for e in ENTITIES),
        "startingOffsets": "earliest",
        "includeHeaders": "true",
        # Messages that expired before being loaded fail the run instead of vanishing.
        "failOnDataLoss": "true",
        "maxOffsetsPerTrigger": str(max_offsets_per_trigger),
        "kafka.request.timeout.ms": "60000",
        "kafka.session.timeout.ms": "30000",
    }
    if service_credential:
        if not namespace:
            raise ConfigError("--service-credential needs --eventhubs-namespace: the namespace it reaches")
        host = namespace_host(namespace)
        options.update({
            "kafka.bootstrap.servers": f"{host}:9093",
            "databricks.serviceCredential": service_credential,
            "databricks.serviceCredential.scope": f"https://{host}/.default",
        })
    elif connection_string:
        options.update({
            "kafka.bootstrap.servers": event_hubs_bootstrap(connection_string),
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.mechanism": "PLAIN",
            "kafka.sasl.jaas.config": (
                f'{JAAS_LOGIN} required username="$ConnectionString" password="{connection_string.strip()}";'
            ),
        })
    elif bootstrap_servers:
        options["kafka.bootstrap.servers"] = bootstrap_servers
    else:
        raise ConfigError("no Kafka cluster: give --eventhubs-secret, --service-credential or --bootstrap-servers")
    return options


def parse_topics(text: str) -> dict[str, str]:
    """`customers=retail.customers,orders=...`: every entity's topic (defaults: its name)."""
    topics = {e: e for e in ENTITIES}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        entity, _, topic = pair.partition("=")
        if entity not in ENTITIES or not topic:
            raise ConfigError(f"--topics: {pair!r} is not <entity>=<topic> with entity one of {', '.join(ENTITIES)}")
        topics[entity] = topic
    return topics


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="retail_loader", description=__doc__)
    parser.add_argument("--secret-scope", required=True, help="Databricks secret scope holding the secrets below")
    parser.add_argument("--eventhubs-secret", default="eventhubs-connection-string",
                        help="key of the Event Hubs namespace connection string (Listen) in the scope")
    parser.add_argument("--bootstrap-servers", help="a plain Kafka cluster instead of Event Hubs")
    parser.add_argument("--service-credential", default="",
                        help="a Unity Catalog service credential for Event Hubs (Entra ID; DBR 16.1+) "
                             "instead of the connection string; empty: the connection string")
    parser.add_argument("--eventhubs-namespace", default="",
                        help="the namespace the service credential reaches: <name> or <name>.servicebus.windows.net")
    parser.add_argument("--topics", default="", help="entity=topic pairs, comma-separated (default: entity names)")
    parser.add_argument("--framing", default="raw", choices=FRAMINGS)
    parser.add_argument("--synapse-jdbc-url", required=True,
                        help="jdbc:sqlserver://<workspace>.sql.azuresynapse.net:1433;database=<pool>;encrypt=true;...")
    parser.add_argument("--synapse-user-secret", default="synapse-user")
    parser.add_argument("--synapse-password-secret", default="synapse-password")
    parser.add_argument("--staging-location", required=True, help="abfss://<container>@<account>.dfs.core.windows.net/<path>")
    parser.add_argument("--checkpoint-location", required=True)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=1_000_000)
    parser.add_argument("--on-undecodable", default="quarantine", choices=ON_UNDECODABLE)
    parser.add_argument("--stage-schema", default="stage",
                        help="schema of the stage tables, one per target sharing a pool (stage, stage_dev)")
    args = parser.parse_args(argv)
    if "password=" in args.synapse_jdbc_url.lower():
        parser.error("--synapse-jdbc-url must not hold the password: it comes from the secret scope")
    if args.max_offsets_per_trigger < 1:
        parser.error("--max-offsets-per-trigger must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    from pyspark.dbutils import DBUtils  # Databricks runtime only
    from pyspark.sql import SparkSession

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = arguments(argv)
    try:
        topics = parse_topics(args.topics)
        settings = Settings(topics, args.staging_location, args.framing, args.on_undecodable, args.stage_schema)
    except ValueError as error:
        sys.exit(f"retail_loader: {error}")

    spark = SparkSession.builder.getOrCreate()
    configure(spark)
    secrets = DBUtils(spark).secrets
    use_secret = not (args.bootstrap_servers or args.service_credential)
    connection_string = secrets.get(args.secret_scope, args.eventhubs_secret) if use_secret else None
    try:
        options = kafka_options(topics, connection_string=connection_string,
                                bootstrap_servers=args.bootstrap_servers,
                                service_credential=args.service_credential or None,
                                namespace=args.eventhubs_namespace or None,
                                max_offsets_per_trigger=args.max_offsets_per_trigger)
    except ConfigError as error:
        sys.exit(f"retail_loader: {error}")

    user = secrets.get(args.secret_scope, args.synapse_user_secret)
    password = secrets.get(args.secret_scope, args.synapse_password_secret)

    warehouse = SynapseWarehouse(jdbc_connector(spark, args.synapse_jdbc_url, user, password),
                                 settings.stage_schema)
    decoder = SparkAvroDecoder()
    query = (
        spark.readStream.format("kafka").options(**options).load()
        .writeStream.queryName("retail_raw_loader")
        .foreachBatch(lambda batch, batch_id: load_batch(
            batch, batch_id, settings=settings, decoder=decoder, warehouse=warehouse))
        .option("checkpointLocation", args.checkpoint_location)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()


INCREMENTAL_MARTS = ("fct_orders", "fct_sales", "fct_payments")
"""The columnstore marts dbt changes by delete+insert every run (deploy/dbt)."""


def maintenance_statements(marts_schema: str) -> list[str]:
    """REORGANIZE of the incremental marts' columnstore indexes: it compresses the rowgroups
    that hourly runs leave open and removes the rows their deletes marked."""
    check_schema(marts_schema)
    return [f"ALTER INDEX ALL ON {marts_schema}.{table} REORGANIZE" for table in INCREMENTAL_MARTS]


def maintain(argv: list[str] | None = None) -> None:
    """The weekly maintenance job's entry point: the statements above, one at a time."""
    from pyspark.dbutils import DBUtils  # Databricks runtime only
    from pyspark.sql import SparkSession

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="retail_loader maintain", description=maintain.__doc__)
    parser.add_argument("--secret-scope", required=True)
    parser.add_argument("--synapse-jdbc-url", required=True)
    parser.add_argument("--synapse-user-secret", default="synapse-user")
    parser.add_argument("--synapse-password-secret", default="synapse-password")
    parser.add_argument("--marts-schema", default="analytics_marts")
    args = parser.parse_args(argv)
    try:
        statements = maintenance_statements(args.marts_schema)
    except ValueError as error:
        sys.exit(f"retail_loader: --marts-schema: {error}")
    spark = SparkSession.builder.getOrCreate()
    secrets = DBUtils(spark).secrets
    connect = jdbc_connector(spark, args.synapse_jdbc_url, secrets.get(args.secret_scope, args.synapse_user_secret),
                             secrets.get(args.secret_scope, args.synapse_password_secret))
    SynapseWarehouse(connect).run(statements)
    logging.getLogger("retail_loader").info("reorganised %s", ", ".join(INCREMENTAL_MARTS))
