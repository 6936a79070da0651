# One image for every binary of the pipeline; the compose file picks the command.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/ingest target/release/enricher target/release/sink target/release/mobaro-sim /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 lake
COPY --from=build /out/ /usr/local/bin/
USER lake
ENV LOG_FORMAT=json
