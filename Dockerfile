# Uptake: one image for every process (`uptake worker`, `uptake writer`, `uptake collector`,
# `uptake migrate`, `uptake simulate`, ...). Build from the repository root:
#
#   docker build -t uptake:0.1.0 .
#   docker run --rm uptake:0.1.0 settings
#
# deploy/docker-compose.yml builds and runs it with Kafka, ClickHouse, Prometheus and Grafana
# (docs/deploy.md).
# Stage 1: build the wheel and export the lock's runtime packages (exact versions, hashes).
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY requirements/uv.txt requirements/uv.txt
RUN pip install --require-hashes --no-deps -r requirements/uv.txt
COPY pyproject.toml uv.lock README.md ./
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY config ./config
COPY dashboards ./dashboards
COPY deploy/local ./deploy/local
COPY sdk ./sdk
RUN uv export --frozen --no-dev --no-emit-project --no-emit-workspace \
        --output-file /dist/requirements.txt \
 && uv build --wheel --out-dir /dist . \
 && uv build --wheel --out-dir /dist sdk

# Stage 2: the runtime image holds the locked dependencies and the wheel, no source tree.
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

COPY --from=build /dist /tmp/dist
RUN pip install --require-hashes --no-deps -r /tmp/dist/requirements.txt \
 && pip install --no-deps /tmp/dist/uptake-*.whl /tmp/dist/uptake_sdk-*.whl \
 && rm -rf /tmp/dist \
 && uptake --version

USER uptake:uptake
WORKDIR /var/lib/uptake
ENV UPTAKE_HOME=/var/lib/uptake
VOLUME ["/var/lib/uptake"]
# 9464: /metrics, /healthz, /readyz of `uptake worker` and `uptake writer`;
# 8080: the collector's API, /metrics, /healthz and /readyz.
EXPOSE 9464 8080

ENTRYPOINT ["uptake"]
CMD ["worker"]
