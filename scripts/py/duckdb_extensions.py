"""DuckDB's delta and httpfs extensions, installed from the wheels the
scripts install (so that no query downloads them), and loaded on demand."""

import glob
import os

import duckdb
import duckdb_extension_delta
import duckdb_extension_httpfs


def install(load: bool = False) -> None:
    """Installs both extensions into DuckDB's extension folder; loads them
    into the default connection when `load`."""
    for module, name in ((duckdb_extension_httpfs, "httpfs"), (duckdb_extension_delta, "delta")):
        folder = os.path.join(os.path.dirname(module.__file__), "extensions", "*")
        path = glob.glob(os.path.join(folder, name + ".duckdb_extension"))[0]
        duckdb.sql(f"INSTALL '{path}'")
        if load:
            duckdb.sql(f"LOAD {name}")


if __name__ == "__main__":
    install()
