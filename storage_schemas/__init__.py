"""Storage: Zarr layouts as typed schemas, artifact manifests, versions, lineage and the catalog.

Never imports Prefect or ``models`` (DESIGN.md §3).
"""
