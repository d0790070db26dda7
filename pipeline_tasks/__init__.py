"""Prefect tasks and the plain functions behind them: one unit of work each, glue between
storage (``storage_schemas``) and networks (``models``)."""
