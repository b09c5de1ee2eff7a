"""Pure logic of the provider: no Airflow imports at module level, heavy libraries imported lazily."""
