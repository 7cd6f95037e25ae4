# Uptake: one image for every process (`uptake worker`, `uptake writer`, `uptake collector`,
# `uptake migrate`, `uptake simulate`, ...). Build from the repository root:
#
#   docker build -t uptake:0.1.0 .
#   docker run --rm uptake:0.1.0 settings
#
# deploy/docker-compose.yml builds and runs it with Kafka, ClickHouse, Prometheus and Grafana
# (docs/deploy.md).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user whose home is the state folder (UPTAKE_HOME): the pseudonym key file
# (unless UPTAKE_PSEUDONYM_KEY is set), faust's folder and, with the embedded engine, the
# warehouse. Mount a volume there to keep it.
RUN groupadd --system --gid 10001 uptake \
 && useradd --system --uid 10001 --gid uptake --home-dir /var/lib/uptake --create-home \
        --shell /usr/sbin/nologin uptake

WORKDIR /opt/uptake
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY config ./config
# Editable on purpose: Uptake reads its migrations (schemas/clickhouse), event schemas
# (schemas/events) and default catalogs (config/) next to the package, from this checkout.
RUN pip install --editable . \
 && uptake --version

USER uptake:uptake
ENV UPTAKE_HOME=/var/lib/uptake
VOLUME ["/var/lib/uptake"]
# 9464: /metrics, /healthz, /readyz of `uptake worker` and `uptake writer`;
# 8080: the collector's API, /metrics, /healthz and /readyz.
EXPOSE 9464 8080

ENTRYPOINT ["uptake"]
CMD ["worker"]
