# fragment-gateway: multi-stage build of the release binary, run as a non-root user.
#
#   docker build -t fragment-gateway .
#   docker run -v fg-data:/var/lib/fragment-gateway \
#     -v $PWD/production.toml:/etc/fragment-gateway/config.toml:ro \
#     -e FG_ADMIN__KEY=... -p 8080:8080 fragment-gateway
#
# The build command is the README's: `cargo build --release --locked`.

FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY events ./events
COPY projections ./projections
COPY kdf ./kdf
COPY src ./src
COPY config ./config
COPY benches ./benches
RUN cargo build --release --locked --bin fragment-gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/fragment-gateway --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/lib/fragment-gateway /etc/fragment-gateway \
 && chown gateway /var/lib/fragment-gateway
COPY --from=build /src/target/release/fragment-gateway /usr/local/bin/fragment-gateway
COPY config/production.example.toml /etc/fragment-gateway/config.toml
USER gateway
VOLUME /var/lib/fragment-gateway
ENV FG_SERVER__LISTEN=0.0.0.0:8080 \
    FG_STORE__DATA_DIR=/var/lib/fragment-gateway \
    FG_SERVER__LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fragment-gateway"]
CMD ["serve", "--config", "/etc/fragment-gateway/config.toml"]
