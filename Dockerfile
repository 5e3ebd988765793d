# syntax=docker/dockerfile:1
# Build: a locked release build in the official Rust image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY samples ./samples
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin okra-callbacks

# Run: a small Debian image, a non-root user, a volume for the SQLite file.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin okra \
 && mkdir -p /data && chown okra /data
COPY --from=build /src/target/release/okra-callbacks /usr/local/bin/okra-callbacks
USER okra
WORKDIR /data
VOLUME ["/data"]
ENV OKRA_LISTEN=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/okra-callbacks.db
EXPOSE 8080
# No curl in the image: the binary checks its own readiness, on the address in OKRA_LISTEN
# (the one the receiver listens on; 0.0.0.0 is checked through 127.0.0.1), so a changed
# OKRA_LISTEN keeps the container healthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["okra-callbacks", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["okra-callbacks"]
CMD ["serve"]
