# Builds the cloudfront-lifecycle image. The same image runs the API and worker ("serve") and
# the CloudFront simulator ("simulator").

FROM rust:1-bookworm AS builder
WORKDIR /build
# The sqlx macros read the committed .sqlx/ query data because no database exists at build time.
ENV SQLX_OFFLINE=true

# Build the dependencies alone against placeholder sources, so this layer stays cached until
# Cargo.toml or Cargo.lock changes.
# NOTE: the placeholders cover only src/lib.rs and src/main.rs. A target that Cargo.toml lists
# with an explicit path elsewhere, or a build.rs, needs its own placeholder here.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

COPY . .
# COPY keeps the files' original modification times, which can be older than the placeholder
# build, so touch the crate roots to make cargo rebuild the crate itself.
RUN touch src/lib.rs src/main.rs \
    && cargo build --release --locked \
    && cp target/release/cloudfront-lifecycle /usr/local/bin/cloudfront-lifecycle

FROM debian:bookworm-slim
# ca-certificates lets the AWS SDK verify TLS. curl serves the container health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 cfl \
    && useradd --system --uid 10001 --gid cfl --no-create-home --shell /usr/sbin/nologin cfl
COPY --from=builder /usr/local/bin/cloudfront-lifecycle /usr/local/bin/cloudfront-lifecycle

USER 10001:10001
ENV BIND_ADDR=0.0.0.0:8080
# mimalloc commits its arenas eagerly on Linux, which took an idle replica from about 21 MB
# to 31 MB resident (bench/idle.sh); committing on demand keeps it small.
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8080
ENTRYPOINT ["cloudfront-lifecycle"]
CMD ["serve"]
