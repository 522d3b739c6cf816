# gridnode in a container: docker build -t gridnode . && docker run -p 8080:8080 gridnode
# See docs/DEPLOY.md.

# The toolchain the lock file needs (sysinfo 0.40 asks for 1.95).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p gridnode && install -m 0755 target/release/gridnode /gridnode

FROM debian:bookworm-slim
# Process and bundle tools are usually shell scripts; ca-certificates for https remote tools.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/gridnode --create-home gridnode
COPY --from=build /gridnode /usr/local/bin/gridnode
USER gridnode
ENV GRIDNODE_DATA_DIR=/var/lib/gridnode \
    GRIDNODE_HTTP=0.0.0.0:8080 \
    GRIDNODE_GRPC=0.0.0.0:50051 \
    RUST_LOG=info
VOLUME ["/var/lib/gridnode"]
# REST, gRPC, libp2p (TCP and QUIC).
EXPOSE 8080 50051 4001/tcp 4001/udp
HEALTHCHECK --interval=10s --timeout=3s CMD ["gridnode", "node"]
ENTRYPOINT ["gridnode"]
CMD ["serve"]
