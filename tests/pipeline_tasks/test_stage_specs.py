"""The stage contract: every stage is declared once as a StageSpec, found by its artifact kind, and its
preset-derived version inputs do not change by accident."""

from __future__ import annotations

import pytest

from pipeline_tasks import stages
from pipeline_tasks.config import PipelineConfig, load_config
from storage_schemas.artifacts import ArtifactError, ArtifactRegistry, config_hash

# What each stage's version hashes from the tiny preset (config_hash of StageSpec.config) and its schema
# version, pinned. A change here changes every tiny artifact of that stage and the stages after it: make
# it on purpose (a config default, a schema bump), then update the pin and say so in the commit. (The code
# a stage runs also enters its version, through storage_schemas/code_hash.py; that is not pinned here.)
TINY_PINS = {
    "genhead_samples": ("b58e58b01eeea2f9", 2),
    "analyser_samples": ("92db8908d2d067c1", 2),  # 2026-12-06: visibility_samples (was visibility_identities)
    "synthetic_videos": ("aeef997f2d1a5954", 2),  # 2026-12-06: videos.smile_events_per_second
    "psi3d": ("9669bf4a9162523d", 2),  # 2026-12-06: compile / compile_backend (off) added
    "motion_encoder": ("a12efa1e9decd462", 1),  # 2026-12-06: compile / compile_backend (off), stem_convs (1) added
    "pseudo_mv": ("5444128b34b5a2b8", 1),
    "psi": ("634ac845f28badb9", 1),  # 2026-12-06: compile / compile_backend (off) added
    "eval": ("1381d118d85ca54e", 4),
}


def test_every_stage_is_declared_once_under_its_kind():
    specs = stages.specs()
    assert [s.kind for s in specs] == list(stages.STAGES)
    sections = set(PipelineConfig.model_fields)
    for s in specs:
        assert callable(s.build) and callable(s.config), s.kind
        assert set(s.sections) <= sections, f"{s.kind}: unknown config sections {set(s.sections) - sections}"
        for parent in s.parents:
            assert all(p in stages.STAGES for p in parent.split("|")), f"{s.kind}: unknown parent kind {parent!r}"
        assert s.task_name == s.kind.replace("_", "-")
    assert stages.spec("psi3d").task() is stages.spec("psi3d").task()  # one Prefect task per stage


def test_an_unknown_kind_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="known kinds: genhead_samples"):
        stages.spec("psi4d")


def test_tiny_version_inputs_are_pinned():
    cfg = load_config("tiny")
    got = {k: (config_hash(stages.spec(k).config(cfg)), stages.spec(k).schema_version) for k in TINY_PINS}
    assert got == TINY_PINS


def test_the_evaluation_analyser_is_stored_as_a_motion_encoder():
    assert stages.spec("eval_analyser").schema_version == stages.spec("motion_encoder").schema_version
    assert stages.spec("eval_analyser").train is None and callable(stages.spec("eval_analyser").load)


def test_resolve_checks_the_kind_and_the_schema_of_a_parent(tmp_path):
    registry = ArtifactRegistry(tmp_path)
    with registry.writer("psi3d", {"n": 1}, [], schema_version=1) as w:  # an old layout of psi3d
        old = w.commit()
    with pytest.raises(ArtifactError, match="schema version 1"):
        stages.resolve(registry, old.ref, "psi3d")
    with registry.writer("motion_encoder", {"n": 1}, [], schema_version=1) as w:
        me = w.commit()
    assert stages.resolve(registry, me.ref, "motion_encoder").ref == me.ref
    with pytest.raises(ArtifactError, match="expected a 'psi3d' artifact"):
        stages.resolve(registry, me, "psi3d")
