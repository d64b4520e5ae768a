"""One local SparkSession for the whole test run, shared by every Spark test.

A session takes 7-14 s to start here, so it is made once (session scope)
and stopped at the end. Tests that use it are marked ``spark`` and skip,
with the reason, when pyspark or Java is missing.
"""

from __future__ import annotations

import shutil

import pytest


def _why_no_spark() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'recgraph[spark]')"
    if shutil.which("java") is None:
        import os

        if not os.environ.get("JAVA_HOME"):
            return "no Java runtime (java not on PATH and JAVA_HOME unset)"
    return None


@pytest.fixture(scope="session")
def spark():
    """The shared local session: 2 cores, few shuffle partitions, no UI."""
    reason = _why_no_spark()
    if reason:
        pytest.skip(reason)
    from recgraph.jobs.candidates.spark import spark_session

    session = spark_session(
        "local[2]",
        app_name="recgraph-tests",
        conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
            "spark.sql.adaptive.enabled": "true",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
