"""The rollup aggregation on Apache Spark (`evallib rollup --engine spark`).

The same moments as the DuckDB engine (`evallib.warehouse.rollup.MOMENTS`), computed by Spark over
the same Parquet part files, for warehouses larger than one machine. Spark runs in local
mode unless ``EVALLIB_SPARK_MASTER`` names a cluster (e.g. ``spark://host:7077``); the small
result comes back to the driver as Arrow and is written by evallib's own writer.
"""

from __future__ import annotations

import os
from typing import Any

import polars as pl

from ..errors import EvallibError

_SESSION: Any = None


def session() -> Any:
    """One Spark session per process (starting the JVM takes seconds), bound to loopback."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EvallibError("--engine spark needs pyspark: pip install -e '.[spark]' "
                           "(and Java 17)") from None
    builder = (SparkSession.builder.appName("evallib-rollup")
               .master(os.environ.get("EVALLIB_SPARK_MASTER", "local[*]"))
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "8")
               # partition values stay text (a run_id "0042" is not the number 42)
               .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false"))
    try:
        _SESSION = builder.getOrCreate()
    except Exception as e:  # no Java, or a cluster that cannot be reached
        raise EvallibError(f"cannot start Spark ({type(e).__name__}: {e}); it needs Java 17 "
                           "(`java -version`)") from None
    _SESSION.sparkContext.setLogLevel("ERROR")
    return _SESSION


def aggregate(urls: list[str], base: str, key: str) -> pl.DataFrame:
    """Per ``key`` (the hive partition: date or run_id) × metric × strata_json of these
    part files under ``base``: kind, n_rows, n, sx, sxx, n_passed."""
    from .rollup import _moment_schema

    if not urls:
        return pl.DataFrame(schema={key: pl.Date if key == "date" else pl.String,
                                    **_moment_schema()})
    from pyspark.sql import functions as F

    from . import schema as S

    spark = session()
    df = _read(spark, base, urls, S.ONLINE_SCORES if key == "date" else S.SCORES)
    value = F.col("value")
    out = df.groupBy(key, "metric", "strata_json").agg(
        F.first("kind", ignorenulls=True).alias("kind"),
        F.count(F.lit(1)).alias("n_rows"),
        F.count(value).alias("n"),
        F.sum(value).alias("sx"),
        F.sum(value * value).alias("sxx"),
        # count_if: null when no row has a pass flag, like DuckDB's
        F.when(F.count("passed") > 0, F.count(F.when(F.col("passed"), 1))).alias("n_passed"),
    )
    return pl.from_arrow(out.toArrow())


def aggregate_sql(spec: Any, urls: list[str], joined: dict[str, list[str]], store: Any
                  ) -> pl.DataFrame:
    """A traffic rollup (`evallib.warehouse.online_rollups.Spec`) of these part files: the same SQL
    as DuckDB runs, on Spark, over temporary views ``src`` and one per joined table."""

    spark = session()

    def view(name: str, table: Any, paths: list[str]) -> None:
        if paths:
            df = _read(spark, store.url(table.name), paths, table)
        else:  # no files: an empty frame of the table's columns
            df = spark.createDataFrame([], schema=_spark_schema(table))
        df.createOrReplaceTempView(name)

    view("src", spec.source, urls)
    for name, paths in joined.items():
        view(name, spec.joins[name], paths)
    out = spark.sql(spec.sql("spark", "src", {name: name for name in joined}))
    return pl.from_arrow(out.toArrow())


def _read(spark: Any, base: str, paths: list[str], table: Any) -> Any:
    """The part files as a frame, by the readers' rule: one row per key (`keys`) in each
    partition, the newest file's (file names sort by the writer's clock)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from . import keys

    reader = spark.read.option("basePath", base)
    if table.added:  # files written before these columns lack them
        reader = reader.option("mergeSchema", "true")
    df = reader.parquet(*paths)
    if table.partition == "date":
        df = df.withColumn("date", F.to_date("date"))
    if table.name == "feedback":
        df = df.withColumn("event_id",
                           F.expr(f"coalesce(event_id, {keys.derived_event_id('spark')})"))
    if not keys.is_keyed(table):
        return df
    latest = Window.partitionBy(*keys.key_columns(table)).orderBy(F.col("_file").desc())
    return (df.withColumn("_file", F.input_file_name())
            .withColumn("_n", F.row_number().over(latest))
            .filter("_n = 1").drop("_n", "_file"))


def _spark_schema(table: Any) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(table.schema)
