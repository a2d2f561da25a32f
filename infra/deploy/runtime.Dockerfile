# The runtime image: `runtime/` (what runs an agent: backtests on Cloud Build, paper sessions
# in Kubernetes) with its locked dependencies, and nothing else: no shell, no compiler, no
# pip, no tradeops front-end or worker code, a non-root user. Built once per release, never
# per backtest (from the repository's root):
#
#   docker build -f infra/deploy/runtime.Dockerfile \
#     -t REGION-docker.pkg.dev/PROJECT/tradeops/runtime:VERSION .
#   docker push REGION-docker.pkg.dev/PROJECT/tradeops/runtime:VERSION
#
# It runs as `python -m runtime backtest|paper …` (the ENTRYPOINT), under the flags of
# infra/deploy/cloudbuild.yaml or the pod security context of the paper StatefulSet: a
# read-only root with a tmpfs /tmp, so HOME and matplotlib's cache point there.

FROM python:3.11-slim AS build
WORKDIR /build
COPY requirements-runtime.lock .
# wheels only (nothing compiled), exactly the locked versions, into a venv without pip
RUN python -m venv --without-pip /opt/runtime \
    && pip --python /opt/runtime/bin/python install --no-cache-dir --no-deps \
        --only-binary=:all: --requirement requirements-runtime.lock
COPY runtime/ /opt/app/runtime/
RUN /opt/runtime/bin/python -m compileall -q /opt/app/runtime /opt/runtime/lib

FROM python:3.11-slim
ENV PATH=/opt/runtime/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONPATH=/opt/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp
COPY --from=build /opt/runtime /opt/runtime
COPY --from=build /opt/app /opt/app
# the user; then nothing needs pip or a shell any more: they go (the shell last)
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin runtime \
    && /usr/local/bin/python -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -f /bin/bash /bin/dash /bin/rbash /usr/bin/bash /usr/bin/dash /usr/bin/rbash \
        /bin/sh /usr/bin/sh
WORKDIR /opt/app
USER 10001:10001
# a batch job (a backtest) or a pod probed over HTTP (paper): no Docker health check
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "runtime"]
