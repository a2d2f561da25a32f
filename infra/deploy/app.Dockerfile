# The tradeops image for the bot, the workers and the scheduler on Kubernetes (agents never
# run in it: backtests run on Cloud Build and paper sessions in pods of the runtime image).
# The locked versions of tradeops with its Google, Kubernetes and Alpaca adapters, a non-root
# user, no shell. From the repository's root:
#
#   docker build -f infra/deploy/app.Dockerfile -t REGION-docker.pkg.dev/PROJECT/tradeops/app:VERSION .

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY bot/ bot/
COPY workers/ workers/
COPY runtime/ runtime/
COPY infra/ infra/
# wheels only, the lock's versions; tradeops itself is built from this source tree
RUN python -m venv /opt/tradeops \
    && /opt/tradeops/bin/pip install --no-cache-dir --only-binary=:all: \
        --constraint requirements.lock setuptools \
    && /opt/tradeops/bin/pip install --no-cache-dir --no-build-isolation \
        --constraint requirements.lock '.[gcp,k8s,alpaca]' \
    && /opt/tradeops/bin/pip uninstall --yes --quiet pip setuptools

FROM python:3.11-slim
ENV PATH=/opt/tradeops/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp
COPY --from=build /opt/tradeops /opt/tradeops
# the user; then nothing needs pip or a shell any more: they go (the shell last)
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tradeops \
    && /usr/local/bin/python -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -f /bin/bash /bin/dash /bin/rbash /usr/bin/bash /usr/bin/dash /usr/bin/rbash \
        /bin/sh /usr/bin/sh
WORKDIR /tmp
USER 10001:10001
# each process serves its own probes (the bot's /health, the others' --health-port)
HEALTHCHECK NONE
ENTRYPOINT ["tradeops"]
