# channels-node image: built on the official Swift image, run on a slim Debian with libhiredis. It ships
# channels-ctl beside the node, reading the node's own CHANNELS_* settings: `docker-compose exec node1 channels-ctl groups`.
FROM swift:6.1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libhiredis-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product channels-node --static-swift-stdlib \
    && swift build -c release --product channels-ctl --static-swift-stdlib \
    && cp "$(swift build -c release --show-bin-path)/channels-node" "$(swift build -c release --show-bin-path)/channels-ctl" /

FROM debian:bookworm-slim
# ca-certificates: rediss:// URLs without ca= trust the system's roots.
RUN apt-get update && apt-get install -y --no-install-recommends libhiredis0.14 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /channels-node /channels-ctl /usr/local/bin/
ENV CHANNELS_HOST=0.0.0.0 CHANNELS_PORT=8000
EXPOSE 8000
USER nobody
# SIGTERM drains: clients get 1001 and reconnect through the load balancer to another replica.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/channels-node"]
