"""Runs each argument as SQL in DuckDB with its delta and httpfs extensions
loaded; with AWS_ENDPOINT_URL and the AWS keys set, s3:// paths reach that
server."""

import os
import sys

import duckdb

from duckdb_extensions import install

install(load=True)
endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
if endpoint and os.environ.get("AWS_ACCESS_KEY_ID"):
    duckdb.sql(f"""CREATE SECRET lake (TYPE s3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
        SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', REGION '{os.environ.get("AWS_REGION", "us-east-1")}',
        ENDPOINT '{endpoint.split("://", 1)[1]}', USE_SSL {str(endpoint.startswith("https")).lower()}, URL_STYLE 'path')""")
for statement in sys.argv[1:]:
    result = duckdb.sql(statement)
    if result is not None:
        result.show()
