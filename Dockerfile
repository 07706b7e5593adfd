# syntax=docker/dockerfile:1.7
# One image for every vigil role (worker, coordinator, setup-streams):
#   docker build -t vigil:dev .
#
# Or from a binary built outside (no Rust image needed; the binary must be
# inside the build context, and target/ is not, see .dockerignore):
#   strip --strip-debug -o dist/vigil target/release/vigil
#   docker build --target runtime-prebuilt --build-arg VIGIL_BINARY=dist/vigil -t vigil:dev .
# scripts/image-check.sh does that with podman or docker and runs the image.
#
# Stage 1 (planner) reduces the source tree to what decides the dependency
# graph: every Cargo.toml, Cargo.lock, and stand-in files for every .rs file.
# Stage 2 builds the dependencies from that skeleton; its layer is reused as
# long as no manifest changes, whatever the edit to the real sources.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
# Binary roots and build scripts need a main; everything else may be empty.
# The skeleton's content depends only on file names and manifests, so the
# COPY --from below is a cache hit while those stay the same.
RUN set -eu; \
    mkdir -p /skeleton; \
    find . -path ./target -prune -o \( -name Cargo.toml -o -name Cargo.lock -o -name '*.rs' \) -type f -print \
    | while read -r f; do \
        mkdir -p "/skeleton/$(dirname "$f")"; \
        case "$f" in \
          *.rs) case "$f" in \
                  */main.rs|*/build.rs|*/src/bin/*|*/benches/*|*/examples/*) echo 'fn main() {}' > "/skeleton/$f" ;; \
                  *) : > "/skeleton/$f" ;; \
                esac ;; \
          *) cp "$f" "/skeleton/$f" ;; \
        esac; \
      done

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never
# The dependency layer.
COPY --from=planner /skeleton/ ./
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --bin vigil
# The real sources. COPY keeps the files' old modification times, which can
# be older than the skeleton's: touch them so cargo rebuilds the workspace crates.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    find . -path ./target -prune -o -name '*.rs' -type f -exec touch {} + \
    && cargo build --release --locked --bin vigil \
    && install -D -m 0755 target/release/vigil /out/vigil \
    && strip --strip-debug /out/vigil

# The base of both runtime stages. ca-certificates: TLS to NATS and to hosted
# model APIs. /bin/sh stays in the image: the nightly CronJob takes the run
# date from the pod with `date -u`. python3 and bubblewrap: the code_exec
# scorer's runtime and sandbox, used only by workers started with
# --allow-code-exec (docs/kubernetes.md says which pod settings the sandbox
# needs); util-linux (setpriv, prlimit) is part of the base image. apt's
# package caches are removed too: a debootstrap base, unlike debian-slim,
# keeps them (~70 MB).
FROM ${RUNTIME_IMAGE} AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 bubblewrap \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --gid 65532 vigil \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vigil

# The runtime from a binary built outside (scripts/image-check.sh).
FROM runtime-base AS runtime-prebuilt
ARG VIGIL_BINARY=dist/vigil
COPY --chmod=0755 ${VIGIL_BINARY} /usr/local/bin/vigil
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["--help"]

# The default: the binary built above.
FROM runtime-base AS runtime
COPY --from=builder /out/vigil /usr/local/bin/vigil
USER 65532:65532
# Health and readiness (--health-addr) and Prometheus metrics (--metrics-addr).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["--help"]
