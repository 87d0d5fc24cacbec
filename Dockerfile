# syntax=docker/dockerfile:1
# vipd's image: a release build in Rust's Debian image, then only the binary on distroless
# (glibc, libgcc, CA certificates, /etc/passwd; no shell, no package manager).
#
#   docker build -t ghcr.io/vipd/vipd:0.1.0 .
#
# The cache mounts keep the crates.io downloads and the target directory between builds on the
# same builder; nothing of them lands in the image.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vipd \
    && strip target/release/vipd \
    && cp target/release/vipd /vipd

FROM gcr.io/distroless/cc-debian12
# Root in the container: the DaemonSet grants NET_ADMIN and NET_RAW (and drops everything
# else); Linux gives a non-root process none of the capabilities its container is granted.
COPY --from=build /vipd /vipd
EXPOSE 2112
ENTRYPOINT ["/vipd"]
CMD ["manager"]
