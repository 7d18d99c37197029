# Image of the Demo Bank Connectivity Suite for the scaled-out shape (docker-compose.yaml) and, next, the
# official Airflow Helm chart. Build: docker compose build (or: docker build -t demobank-airflow .).
#
# Base image: python:3.11-slim-bookworm rather than apache/airflow:3.3.2-python3.11, because
# requirements.txt pins the whole dependency tree (Airflow 3.3.2, its providers, celery<5.7, the SDKs) and
# `make install` tests exactly that tree. The official image ships its own constraint set and a preinstalled
# provider selection; installing our pins over it would mix the two trees (and double the image size).
# Here the image holds what the tests ran against, nothing else. What the official image's entrypoint
# does for us (DB wait, `airflow db migrate`, user creation) is the airflow-init service's job
# (python -m demobank.compose_init).
FROM python:3.11-slim-bookworm

ARG AIRFLOW_UID=50000
ARG UV_VERSION=0.13.8

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    DEMOBANK_LOGIC_APPS_DIR=/opt/airflow/dags/logic_apps \
    DEMOBANK_FUNCTIONS_DIR=/opt/airflow/dags/functions \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# tini: PID 1 that forwards signals (a Celery worker's warm shutdown on SIGTERM) and reaps zombies;
# curl: the services' health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini curl \
    && rm -rf /var/lib/apt/lists/*

# Pinned dependencies first (their layer is reused until requirements.txt changes), with the same uv as the
# Makefile.
WORKDIR /tmp/build
COPY requirements.txt ./
RUN pip install uv==${UV_VERSION} \
    && uv pip install --system --compile-bytecode -r requirements.txt

# The suite's package (its dependencies are all in requirements.txt already: --no-deps).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . \
    && rm -rf /tmp/build/*

# Non-root user as in the official image (uid 50000, group 0 so that OpenShift-style arbitrary uids work).
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/plugins /opt/airflow/include /opt/airflow/logs /opt/airflow/auth \
    && chown -R "${AIRFLOW_UID}:0" /opt/airflow \
    && chmod -R g+rwX /opt/airflow

COPY --chown=${AIRFLOW_UID}:0 dags/ /opt/airflow/dags/
COPY --chown=${AIRFLOW_UID}:0 plugins/ /opt/airflow/plugins/
COPY --chown=${AIRFLOW_UID}:0 include/ /opt/airflow/include/
COPY --chown=${AIRFLOW_UID}:0 airflow_settings.yaml /opt/airflow/airflow_settings.yaml

USER ${AIRFLOW_UID}
WORKDIR /opt/airflow

# 8080: API server and UI; 8793: a worker's log server.
EXPOSE 8080 8793

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
