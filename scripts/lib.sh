# Shared by scripts/up and scripts/test: installs the local services into a
# per-user cache (outside the checkout, so fresh clones reuse it) and starts them.

LAKE_CACHE="${MOBARO_LAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mobaro-lake}"
TOOLS="$LAKE_CACHE/tools"
VENV="$LAKE_CACHE/venv"
TANSU_VERSION=0.6.0
S3S_FS_VERSION=0.14.1
DUCKDB_VERSION=1.5.5
DELTALAKE_PY_VERSION=1.6.6
# dbt-core 1.12 downloads a parser from GitHub while it installs (its
# dependency dbt-core-experimental-parser): 1.11 installs from PyPI alone.
DBT_CORE_VERSION=1.11.16
DBT_DUCKDB_VERSION=1.11.1
KUBERNETES_VALIDATE_VERSION=1.37.0
ECHARTS_VERSION=6.1.0
AZURITE_VERSION=3.35.0
SERVICE_PIDS=()

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_tools() {
  mkdir -p "$TOOLS"
  if [ ! -x "$TOOLS/bin/tansu" ]; then
    log "installing tansu $TANSU_VERSION (Kafka-compatible broker; first time only, several minutes)"
    cargo install --locked --quiet --root "$TOOLS" tansu --version "$TANSU_VERSION" --features dynostore,libsql
  fi
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    log "installing s3s-fs $S3S_FS_VERSION (S3-compatible server; first time only)"
    cargo install --locked --quiet --root "$TOOLS" s3s-fs --version "$S3S_FS_VERSION" --features binary
  fi
  # DuckDB with its delta and httpfs extensions from their PyPI wheels (no
  # download at query time), and the deltalake package: readers of the lake
  # that share no code with the sink.
  if ! "$VENV/bin/python" -c "import duckdb, deltalake, duckdb_extension_delta, duckdb_extension_httpfs, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION' or deltalake.__version__ != '$DELTALAKE_PY_VERSION')" 2>/dev/null; then
    log "installing DuckDB $DUCKDB_VERSION (with its delta and httpfs extensions) and deltalake $DELTALAKE_PY_VERSION for Python into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" \
      "duckdb-extension-delta==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION" \
      "deltalake==$DELTALAKE_PY_VERSION"
  fi
}

# What scripts/dbt adds: dbt with its DuckDB adapter, beside the same DuckDB,
# and DuckDB's delta and httpfs extensions installed from their wheels into
# DuckDB's extension folder, where dbt's connections load them.
ensure_dbt() {
  ensure_tools
  if ! "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('dbt-core') != '$DBT_CORE_VERSION' or m.version('dbt-duckdb') != '$DBT_DUCKDB_VERSION')" 2>/dev/null; then
    log "installing dbt-core $DBT_CORE_VERSION and dbt-duckdb $DBT_DUCKDB_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "dbt-core==$DBT_CORE_VERSION" \
      "dbt-duckdb==$DBT_DUCKDB_VERSION" "duckdb==$DUCKDB_VERSION"
  fi
  "$VENV/bin/python" scripts/py/duckdb_extensions.py
}

# What the manifests' test needs besides kubectl: kubernetes-validate, with
# Kubernetes' schemas, in the tools' Python.
ensure_manifest_tools() {
  ensure_tools
  if ! "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
}

# What scripts/dashboard adds: ECharts from the npm registry, kept in the
# cache and copied beside the page, which then needs no network.
ECHARTS="$LAKE_CACHE/npm/node_modules/echarts/dist/echarts.min.js"
ensure_dashboard() {
  ensure_dbt
  if ! grep -qs "\"version\": \"$ECHARTS_VERSION\"" "$LAKE_CACHE/npm/node_modules/echarts/package.json"; then
    command -v npm >/dev/null || { echo "npm is missing: install Node.js (with npm) to build the dashboard" >&2; return 1; }
    log "installing ECharts $ECHARTS_VERSION from the npm registry into $LAKE_CACHE/npm"
    mkdir -p "$LAKE_CACHE/npm"
    npm install --silent --no-audit --no-fund --prefix "$LAKE_CACHE/npm" "echarts@$ECHARTS_VERSION" >&2
  fi
}

# What the suite's test of az:// lakes adds: Azurite, the Azure Blob Storage
# emulator, from the npm registry.
AZURITE="$LAKE_CACHE/npm/node_modules/.bin/azurite-blob"
ensure_azurite() {
  if ! grep -qs "\"version\": \"$AZURITE_VERSION\"" "$LAKE_CACHE/npm/node_modules/azurite/package.json"; then
    command -v npm >/dev/null || { echo "npm is missing: install Node.js (with npm) for Azurite, the Azure Blob Storage emulator" >&2; return 1; }
    log "installing Azurite $AZURITE_VERSION (Azure Blob Storage emulator) from the npm registry into $LAKE_CACHE/npm"
    mkdir -p "$LAKE_CACHE/npm"
    npm install --silent --no-audit --no-fund --prefix "$LAKE_CACHE/npm" "azurite@$AZURITE_VERSION" >&2
  fi
}

# What `scripts/bench ingest` adds: wrk (Debian's package) as the load
# generator, and aiohttp with confluent-kafka for the Python receiver.
ensure_bench_tools() {
  if ! command -v wrk >/dev/null; then
    log "installing wrk (HTTP load generator) from Debian's packages"
    if [ "$(id -u)" = 0 ]; then
      apt-get install -y -q wrk >/dev/null
    else
      echo "wrk is missing: install Debian's package wrk (sudo apt-get install wrk)" >&2
      return 1
    fi
  fi
  if ! "$VENV/bin/python" -c "import aiohttp, confluent_kafka" 2>/dev/null; then
    log "installing aiohttp and confluent-kafka into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check aiohttp confluent-kafka
  fi
}

require_free_disk() { # gibibytes the next step needs under target/
  local dir free
  dir=$(pwd)
  free=$(df -Pk "$dir" | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free" -lt "$1" ]; then
    echo "only ${free} GiB free on the disk of $dir; the build needs about $1 GiB." >&2
    echo "free some space (for example 'cargo clean' in an old checkout) and run again." >&2
    exit 1
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port name logfile
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not start listening on port $1; its log:" >&2
  tail -n 30 "$3" >&2
  return 1
}

stop_services() {
  local pid
  for pid in "${SERVICE_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVICE_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  SERVICE_PIDS=()
}

# Services run in their own session: a Ctrl-C reaches only the script, whose
# trap stops them after the stages that use them.

# Starts tansu on a free loopback port; exports KAFKA_BROKERS. Its storage
# is sqlite: tansu's memory storage skips the rest of a record batch when a
# fetch starts inside it, which loses records after a consumer restart.
start_broker() { # workdir [storage url, default sqlite in workdir]
  local port; port=$(free_port)
  export BROKER_PORT="$port" BROKER_STORAGE="${2:-sqlite://$1/broker.db}"
  # tansu opens sqlite://PATH relative to its working directory, so an
  # absolute path works from /.
  (cd / && exec setsid "$TOOLS/bin/tansu" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "$BROKER_STORAGE") >"$1/broker.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for_port "$port" broker "$1/broker.log"
  export KAFKA_BROKERS="127.0.0.1:$port"
  log "broker (tansu) at $KAFKA_BROKERS"
}

# Starts s3s-fs on a free loopback port serving $1/s3; exports the AWS variables.
start_s3() { # workdir bucket
  local port; port=$(free_port)
  mkdir -p "$1/s3/$2"
  export AWS_ACCESS_KEY_ID=lake-test-access AWS_SECRET_ACCESS_KEY=lake-test-secret AWS_REGION=us-east-1
  setsid "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$port" \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$1/s3" >"$1/s3.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for_port "$port" s3s-fs "$1/s3.log"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
  log "S3 server (s3s-fs) at $AWS_ENDPOINT_URL, bucket $2"
}

# Starts Azurite's blob service on a free loopback port, in memory, with the
# container $2 (created with the emulator's well-known account key); exports
# AZURITE_BLOB_STORAGE_URL and LAKE_TEST_AZURE_CONTAINER.
start_azurite() { # workdir container
  local port; port=$(free_port)
  setsid "$AZURITE" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence \
    --skipApiVersionCheck >"$1/azurite.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for_port "$port" Azurite "$1/azurite.log"
  python3 scripts/py/azurite_container.py "$port" "$2"
  export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$port" LAKE_TEST_AZURE_CONTAINER="$2"
  log "Azure Blob Storage emulator (Azurite) at $AZURITE_BLOB_STORAGE_URL, container $2"
}
