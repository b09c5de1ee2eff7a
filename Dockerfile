# syntax=docker/dockerfile:1
# Images of the stack (docker-compose.yml).  No secret is copied or baked in: every password, key
# and connection comes from .env at run time (.dockerignore keeps .env out of the build context).
#
#   docker compose build                 # both targets
#   docker build --target mlflow -t airflow-provider-mlops-mlflow .
#   docker build --target airflow -t airflow-provider-mlops .

ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- MLflow tracking server
FROM python:${PYTHON_VERSION}-slim-bookworm AS mlflow
COPY constraints.txt /tmp/constraints.txt
# The same MLflow (and psycopg2) version as the provider is tested with, pinned by constraints.txt.
RUN pip install --no-cache-dir -c /tmp/constraints.txt "mlflow[auth]" psycopg2-binary \
    && rm /tmp/constraints.txt \
    && useradd --create-home --uid 50001 mlflow \
    && mkdir -p /mlflow/artifacts && chown -R mlflow /mlflow
USER mlflow
WORKDIR /mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]

# ---------------------------------------------------------------- the provider's wheel
# Built from the source tree here; the airflow target installs only this wheel (as a user would from an
# index), never the source tree.  The same as `python -m build --wheel` on a checkout.
FROM python:${PYTHON_VERSION}-slim-bookworm AS wheel
COPY pyproject.toml README.md CHANGELOG.md LICENSE MANIFEST.in constraints.txt /src/
COPY provider /src/provider
RUN pip install --no-cache-dir -c /src/constraints.txt build && python -m build --wheel --outdir /dist /src

# ---------------------------------------------------------------- Airflow with the provider
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow
COPY --chown=airflow:0 constraints.txt /opt/mlops/constraints.txt
COPY --from=wheel --chown=airflow:0 /dist/ /opt/mlops/dist/
COPY --chown=airflow:0 deploy/airflow-init.sh /opt/mlops/deploy/airflow-init.sh
# constraints.txt pins apache-airflow to the image's version, so pip keeps the image's Airflow.
RUN pip install --no-cache-dir -c /opt/mlops/constraints.txt \
        "$(ls /opt/mlops/dist/airflow_provider_mlops-*.whl)[postgres,celery,openlineage,s3]" \
    && python -c "import mlops_provider.hooks.mlflow" \
    && mkdir -p /opt/airflow/config /opt/airflow/data && chmod -R g+rwX /opt/airflow/config /opt/airflow/data
