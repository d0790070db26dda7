"""Ψ3d's held-out validation sees expression: constructed models whose renders are known.

A model that renders the truth of whatever face it is given must score an expression change of 1 at
every bin; one that renders every face neutral (right geometry, no expression) must score 0, and lose
mouth-region PSNR, not whole-image geometry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.genhead import params as P
from pipeline_tasks.eval.benchmark_set import NovelViewSet, render_novel_view_set
from pipeline_tasks.train_psi3d import baselines, summarise, validate_views

BINS = [-30.0, 0.0, 30.0]


@pytest.fixture(scope="module")
def views() -> NovelViewSet:
    g = torch.Generator().manual_seed(3)
    n = 3
    expression = torch.zeros(n, len(P.EXPRESSION_NAMES))
    expression[1] = P.expression_vector(jaw_open=1.0)[0]
    expression[2] = P.expression_vector(smile=0.9, blink_left=1.0, blink_right=1.0)[0]
    return render_novel_view_set(
        torch.randn(n, len(P.SHAPE_NAMES), generator=g),
        expression,
        torch.zeros(n, 2),
        torch.randn(n, P.Z_DIM, generator=g),
        BINS,
        resolution=48,
    )


class TruthLookup(nn.Module):
    """Renders, for an input image of the set, the stored truth at the bins: the neutral truth when
    ``neutral_only`` (a reconstructor that drops expression), else the truth of the face it was given."""

    def __init__(self, views: NovelViewSet, neutral_only: bool):
        super().__init__()
        self.views, self.neutral_only = views, neutral_only

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        v = self.views
        rows = []
        for img in src:
            i = next((k for k in range(v.n) if torch.equal(img, v.source[k])), None)
            neutral = i is None
            if neutral:
                i = next(k for k in range(v.n) if torch.equal(img, v.neutral_source[k]))
            rows.append(torch.tensor([i, int(neutral or self.neutral_only)]))
        return torch.stack(rows)

    def render(self, planes, cameras, perturb=False):
        v = self.views
        img = torch.stack([(v.neutral_targets if flat else v.targets)[i] for i, flat in planes.tolist()])
        b, n_views, _, h, w = img.shape
        return {
            "image": img,
            "alpha": v.alpha[planes[:, 0]],
            "depth": v.depth[planes[:, 0]],
            "background_raw": torch.zeros(b * n_views, 3, h, w),
        }


def lpips_stub(a, b):
    return (a - b).abs().mean()


def test_the_set_carries_neutral_renders_that_differ_only_where_the_face_moves(views):
    assert views.expressive.tolist() == [False, True, True]
    assert torch.equal(views.neutral_targets[0], views.targets[0])  # neutral identity: identical
    assert not torch.equal(views.neutral_targets[1], views.targets[1])  # jaw open: the mouth changes


def test_a_faithful_reconstructor_scores_change_1_and_an_expressionless_one_0(views):
    faithful = validate_views(TruthLookup(views, neutral_only=False), views, "cpu", lpips_stub)
    flat = validate_views(TruthLookup(views, neutral_only=True), views, "cpu", lpips_stub)
    assert faithful["expression_change"] == pytest.approx([1.0] * len(BINS), abs=1e-5)
    assert flat["expression_change"] == pytest.approx([0.0] * len(BINS), abs=1e-6)
    # same geometry, so the silhouette cannot tell them apart; the mouth region can
    assert flat["soft_iou"] == pytest.approx(faithful["soft_iou"])
    for j in range(len(BINS)):
        assert flat["mouth_psnr"][j] < faithful["mouth_psnr"][j] - 10
        assert flat["psnr"][j] > flat["mouth_psnr"][j]  # the mouth is where the expression error lives


def test_summary_reports_the_expression_metrics_beside_the_baselines(views):
    m = validate_views(TruthLookup(views, neutral_only=True), views, "cpu", lpips_stub)
    base = baselines(views, views.source.mean(0, keepdim=True))
    s = summarise(m, base, BINS)
    assert s["expression_change_novel"] == pytest.approx(0.0, abs=1e-6)
    assert s["expression_change_yaw0"] == pytest.approx(0.0, abs=1e-6)
    # copying the frontal input to ±30° misplaces the mouth: far below the neutral head's mouth PSNR
    assert s["mouth_psnr_input_novel"] < s["mouth_psnr_novel"]
    assert len(base["mouth_psnr_input"]) == len(BINS)
