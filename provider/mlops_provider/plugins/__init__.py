"""The provider's Airflow plugin: the MLOps view (see :mod:`.mlops` and :mod:`.app`)."""

#: Where the API server mounts the MLOps view's FastAPI app.
URL_PREFIX = "/mlops"
