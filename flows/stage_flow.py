"""One factory for the flows of stages that take no parent artifact (stages 1, 1b and the synthetic videos):
build or reuse the stage's artifact through its Prefect task, publish its summary, return its ``kind@version``."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.reports import artifact_markdown
from pipeline_tasks import stages
from pipeline_tasks.config import Preset, load_config
from storage_schemas.artifacts import Artifact


def publish(art: Artifact) -> str:
    """The artifact's summary (its stage's own, or the generic one) as a Prefect markdown artifact; its ref."""
    spec = stages.spec(art.kind)
    text = spec.summary(art) if spec.summary is not None else artifact_markdown(art)
    create_markdown_artifact(markdown=text, key=spec.task_name, description=f"{art.kind} {art.ref}")
    return art.ref


def parentless_stage_flow(kind: str, description: str):
    """The flow of stage ``kind``: ``flow(preset="tiny", overrides=None) → "kind@version"``."""
    spec = stages.spec(kind)
    if spec.parents:
        raise ValueError(f"stage {kind!r} takes parents {spec.parents}; write its flow by hand")

    @flow(name=spec.task_name, log_prints=True, description=description)
    def stage_flow(preset: Preset = "tiny", overrides: list[str] | None = None) -> str:
        return publish(spec.task()(load_config(preset, overrides)))

    return stage_flow
