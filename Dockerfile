# syntax=docker/dockerfile:1
# One image for both components: the chart runs it as `faro optimizer …` and `faro adapter …`.
#   docker build -t ghcr.io/faro-k8s/faro:0.1.0 .
# Stage 1 installs Faro and its dependencies into a virtualenv; stage 2 copies only that virtualenv
# onto a fresh slim base (no compiler, no pip cache, no sources) and runs as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/faro
WORKDIR /src
# Packaging metadata first so the dependency layer is cached across source changes.
COPY pyproject.toml setup.py README.md ./
COPY optimizer/ optimizer/
COPY adapter/ adapter/
COPY proto/ proto/
COPY traces/ traces/
RUN /opt/faro/bin/pip install . \
 && /opt/faro/bin/faro optimizer --help >/dev/null \
 && /opt/faro/bin/faro adapter --help >/dev/null

FROM python:3.11-slim
LABEL org.opencontainers.image.title="faro" \
      org.opencontainers.image.description="SLO-aware cluster-wide autoscaler for ML inference (optimizer + adapter)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 faro \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin faro
COPY --from=build /opt/faro /opt/faro
# HOME and caches on /tmp: the chart mounts an emptyDir there and keeps the root filesystem read-only.
ENV PATH=/opt/faro/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
# optimizer: 50051 gRPC plans, 8080 metrics/health; adapter: 6443 HTTPS, 9443 KEDA gRPC, 8081 metrics.
EXPOSE 50051 8080 6443 9443 8081
ENTRYPOINT ["faro"]
CMD ["--help"]
