# One image for pvebalance-exporter, pvebalance (the controller) and pvebalance-sim;
# docker-compose.yml picks the program with `command:`.
FROM python:3.11-slim-bookworm

# openssl: the simulator makes its TLS certificate with it (and the demo's sim-tls step).
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/pvebalance
# The versions the Debian package bundles too (packaging/requirements.lock, build backend
# included): PIP_CONSTRAINT also reaches pip's isolated build environment.
COPY packaging/requirements.lock ./packaging/
COPY pyproject.toml README.md ./
COPY pveapi ./pveapi
COPY exporter ./exporter
COPY planner ./planner
COPY controller ./controller
COPY simulator ./simulator
COPY demoloop ./demoloop
RUN PIP_CONSTRAINT=packaging/requirements.lock pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home-dir /var/lib/pvebalance --create-home pvebalance \
 && mkdir -p /etc/pvebalance/tls

USER pvebalance
# exporter, controller, simulator (the package's units use the same ports, paths and user name)
EXPOSE 19221 9883 8006
CMD ["pvebalance-exporter", "--help"]
