# syntax=docker/dockerfile:1
# SantéGuard's image: `docker build -t <registry>/santeguard:0.1.0 .`
# Runs as uid 10001 on a read-only root filesystem; it writes only to /tmp and to
# /var/lib/santeguard (the chart mounts emptyDir volumes there). Kubernetes probes
# /health and /ready (docs/kubernetes.md), so there is no HEALTHCHECK.

# --- build: wheels of SantéGuard and of every dependency -------------------------------
FROM python:3.11-slim AS builder

# Compilers, only for a dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY bot ./bot
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: Python and the wheels, no compilers ----------------------------------------
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 santeguard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/santeguard --shell /usr/sbin/nologin santeguard

# pip compiles the bytecode at install time, so nothing is written under site-packages
# at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels santeguard

RUN mkdir -p /etc/santeguard /var/lib/santeguard \
    && chown 10001:10001 /var/lib/santeguard \
    && chmod 0700 /var/lib/santeguard

USER 10001:10001
WORKDIR /var/lib/santeguard
EXPOSE 29340
ENTRYPOINT ["santeguard"]
CMD ["run", "-c", "/etc/santeguard/config.yaml"]
