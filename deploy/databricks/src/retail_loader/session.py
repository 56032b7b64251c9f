"""The Spark settings the loader relies on, in one place: the job's entry points apply them to
the cluster's session, local runs and tests build a session with them."""

from __future__ import annotations

import os
import sys

SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    # COPY INTO (PolyBase) reads INT96 timestamps over their whole range.
    "spark.sql.parquet.outputTimestampType": "INT96",
}


def configure(spark) -> None:
    """Applies the loader's settings to a running session (a Databricks job's)."""
    for key, value in SETTINGS.items():
        spark.conf.set(key, value)


def local_session(app_name: str, class_path: str | None = None):
    """A local Spark session with the loader's settings, two cores, no UI; its Python workers
    run in this interpreter (which has the loader installed). `class_path`: a jar on the
    driver's class path (a JDBC driver, as a Databricks cluster has)."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = (
        SparkSession.builder.master("local[2]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
    )
    for key, value in SETTINGS.items():
        builder = builder.config(key, value)
    if class_path:
        builder = builder.config("spark.driver.extraClassPath", class_path)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
