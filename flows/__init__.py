"""Prefect flows: order stages, map tasks, publish Prefect artifacts. No math here (DESIGN.md §3)."""
