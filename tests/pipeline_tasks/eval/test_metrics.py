"""Metrics against known values: identical images, known noise levels, closed forms."""

import math

import numpy as np
import pytest
import torch

from pipeline_tasks.ablation import compare, paired_difference
from pipeline_tasks.eval.instruments import PoseProbe
from pipeline_tasks.eval.metrics import change_correlation, psnr, ssim


def _grey(b=4, res=48, level=0.0):
    return torch.full((b, 3, res, res), level)


def test_identical_images_score_perfectly():
    x = torch.rand(3, 3, 40, 40) * 2 - 1
    assert (psnr(x, x) > 90).all()
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
def test_psnr_of_known_gaussian_noise(sigma):
    """Noise of std σ on [0, 1] images → PSNR = −20·log10(σ) (no clipping: grey images, small σ)."""
    g = torch.Generator().manual_seed(0)
    target = _grey(4, 96)
    pred = target + 2 * sigma * torch.randn(target.shape, generator=g)  # [−1,1] units = 2 × [0,1] units
    expected = -20 * math.log10(sigma)
    assert psnr(pred, target).mean().item() == pytest.approx(expected, abs=0.05)


def test_psnr_of_a_constant_offset_is_exact():
    target = _grey(2, 32, -0.2)
    assert torch.allclose(psnr(target + 0.2, target), torch.full((2,), 20.0), atol=1e-4)  # offset 0.1 in [0,1]


def test_ssim_closed_form_for_constant_images():
    """Constant images: SSIM = luminance term (2μxμy + C1)/(μx² + μy² + C1) (the structure term is C2/C2)."""
    x, y = 0.5, 0.6  # in [0, 1]
    c1 = 0.01**2
    expected = (2 * x * y + c1) / (x * x + y * y + c1)
    got = ssim(_grey(1, 32, 2 * x - 1), _grey(1, 32, 2 * y - 1))
    # float32 variance E[y²] − μ² cancels to ~1e−7, not 0: a 2e−4 wobble against C2 = 9e−4
    assert got.item() == pytest.approx(expected, abs=5e-4)
    assert ssim(_grey(1, 32, 0.0), _grey(1, 32, 0.6)).item() < got.item() - 0.05  # a larger offset scores lower


def test_ssim_and_lpips_degrade_monotonically_with_noise():
    from models.losses import LPIPSLoss

    lp = LPIPSLoss("alex")
    g = torch.Generator().manual_seed(1)
    base = torch.rand(2, 3, 64, 64, generator=g) * 1.6 - 0.8
    noise = torch.randn(base.shape, generator=g)
    s, lpips_scores = [], []
    for sigma in (0.0, 0.05, 0.2):
        pred = (base + sigma * noise).clamp(-1, 1)
        s.append(ssim(pred, base).mean().item())
        lpips_scores.append(lp.lpips(pred, base, normalize=False).mean().item())
    assert s[0] == pytest.approx(1.0, abs=1e-5) and s[0] > s[1] > s[2]
    assert lpips_scores[0] == pytest.approx(0.0, abs=1e-6) and lpips_scores[0] < lpips_scores[1] < lpips_scores[2]


def test_pose_probe_recovers_a_linear_map():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(200, 12, generator=g)
    w = torch.randn(12, 2, generator=g)
    target = feats @ w * 10 + torch.tensor([5.0, -3.0])
    probe = PoseProbe(lam=1e-6).fit(feats[:150], target[:150])
    assert torch.allclose(probe.predict(feats[150:]), target[150:], atol=1e-2)


def test_paired_difference_and_standard_error():
    a = [[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]
    b = [[0.0, 2.0], [1.0, 2.0], [2.0, 3.0]]
    diff, se = paired_difference(a, b)
    d = np.array(a) - np.array(b)
    assert diff == pytest.approx(d.mean(0).tolist())
    assert se == pytest.approx((d.std(0, ddof=1) / math.sqrt(3)).tolist())


def test_compare_refuses_evaluations_on_different_benchmarks():
    from pipeline_tasks.eval.results import EvaluationError

    res = {"model": "psi@a", "benchmark": {"digest": "x"}, "tasks": {}}
    with pytest.raises(EvaluationError, match="different benchmarks"):
        compare(res, {**res, "model": "psi@b", "benchmark": {"digest": "y"}})


def test_soft_iou_scores_a_fog_low_and_the_truth_one():
    from pipeline_tasks.eval.metrics import soft_iou

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    head = ((xx**2 + yy**2) < 0.5).float()[None, None]  # ~39% of the image
    assert float(soft_iou(head, head)) == pytest.approx(1.0)
    fog = torch.full_like(head, 0.5)
    f = float(head.mean())
    assert float(soft_iou(fog, head)) == pytest.approx(
        0.5 * f / (f + 0.5 * (1 - f)), rel=1e-5
    )  # Σ min / Σ max, closed form
    assert float(soft_iou(fog, head)) < 0.45
    shifted = torch.roll(head, 8, dims=-1)
    assert 0.5 < float(soft_iou(shifted, head)) < 0.9


def test_masked_depth_error_counts_only_the_true_foreground():
    from pipeline_tasks.eval.metrics import masked_depth_error

    alpha = torch.zeros(1, 1, 8, 8)
    alpha[..., :4, :] = 1
    truth = torch.full((1, 1, 8, 8), 4.0)
    pred = truth.clone()
    pred[..., :4, :] += 0.1  # wrong by 0.1 inside
    pred[..., 4:, :] += 9.0  # anything outside is ignored
    assert float(masked_depth_error(pred, truth, alpha)) == pytest.approx(0.1, abs=1e-6)


# ---------------------------------------------------------------- reenactment metrics that can see expression
def test_masked_psnr_only_counts_the_region():
    from pipeline_tasks.eval.metrics import masked_psnr

    truth = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:4, 2:4] = 1
    mask[1] = 0
    pred = truth.clone()
    pred[:, :, 6:, 6:] = 1.0  # wrong only outside the region
    out = masked_psnr(pred, truth, mask)
    assert out[0] > 90 and torch.isnan(out[1])  # perfect inside; an empty region is undefined, not perfect
    pred[:, :, 2:4, 2:4] = 1.0  # half the [−1, 1] range wrong inside → MSE 0.25 on [0, 1]
    assert masked_psnr(pred, truth, mask)[0] == pytest.approx(10 * math.log10(4), abs=1e-3)


def test_change_correlation_on_constructed_changes():
    from pipeline_tasks.eval.metrics import change_correlation

    g = torch.Generator().manual_seed(0)
    base, delta = torch.rand(3, 3, 16, 16, generator=g), torch.zeros(3, 3, 16, 16)
    delta[:, :, 10:14, 4:12] = 0.5  # the truth changes the mouth
    elsewhere = torch.zeros_like(delta)
    elsewhere[:, :, 1:5, 4:12] = 0.5  # a change in the wrong place
    truth_d = base + delta
    assert torch.allclose(change_correlation(truth_d, base, truth_d, base), torch.ones(3))  # perfect reenactment
    assert torch.allclose(
        change_correlation(base + 0.3 * delta, base, truth_d, base), torch.ones(3)
    )  # right place, weaker
    assert torch.equal(change_correlation(base, base, truth_d, base), torch.zeros(3))  # no motion / copy-source
    assert torch.allclose(change_correlation(base - delta, base, truth_d, base), -torch.ones(3))
    assert change_correlation(base + elsewhere, base, truth_d, base).abs().max() < 0.3


def test_region_psnr_sees_an_expression_whole_frame_psnr_hides():
    """The truth with the source expression as the prediction (what no reenactment renders) against the truth
    with a driving wide mouth, jaw a little open: whole-frame PSNR stays high, mouth PSNR does not; eyes are
    untouched."""
    from models import cameras as cam
    from models.genhead import params as P
    from models.genhead.ground_truth import GroundTruth, identity_ids
    from models.genhead.regions import region_masks
    from pipeline_tasks.eval.metrics import masked_psnr, psnr

    gt = GroundTruth()
    ids = identity_ids(12, 3)
    cams = cam.orbit_label(torch.tensor([-0.5, 0.0, 0.5]), torch.zeros(3))
    source = gt.render(ids, cams, 48).rgb
    driving = gt.render(ids, cams, 48, expression=P.expression_vector(3, mouth_wide=1.0, jaw_open=0.4)).rgb
    masks = region_masks(cams, 48)
    whole, mouth, eyes = (
        psnr(source, driving),
        masked_psnr(source, driving, masks["mouth"]),
        masked_psnr(source, driving, masks["eyes"]),
    )
    assert (mouth < whole - 4).all() and (eyes > mouth + 4).all()  # measured: 5.5–9 dB lower inside the mouth
    assert (masked_psnr(driving, driving, masks["mouth"]) > 90).all()  # a perfect reenactment scores the ceiling


def test_ablation_statistics_over_seeds_and_identities():
    """Seeds paired by position: the difference is averaged over seeds and identities; each seed's own mean is
    kept; a seed-to-seed offset widens the bootstrap interval, which holds 0 when the variants do not differ."""
    from pipeline_tasks.ablation import bootstrap_interval, significant_bins

    rng = np.random.default_rng(0)
    n, v = 12, 3
    truth = rng.normal(20, 1, (n, v))

    def result(model, per_image):
        return {
            "model": model,
            "benchmark": {"digest": "x"},
            "tasks": {
                "cross_view": {
                    "bins": ["-30°", "+0°", "+30°"],
                    "per_image": {"psnr": per_image.tolist()},
                    "by_bin": {"psnr": per_image.mean(0).tolist()},
                }
            },
        }

    # the method is +1 dB at every identity and seed; seed offsets are shared by both variants (paired seeds)
    offsets = [0.0, 0.5, -0.3]
    method = [result(f"psi@m{s}", truth + 1.0 + o) for s, o in enumerate(offsets)]
    base = [result(f"psi@b{s}", truth + o) for s, o in enumerate(offsets)]
    r = compare(method, base)["cross_view"]["metrics"]["psnr"]
    assert r["difference"] == pytest.approx([1.0] * v) and np.allclose(r["seed_differences"], 1.0)
    assert r["ci95"][0] == pytest.approx([1.0] * v) and r["ci95"][1] == pytest.approx([1.0] * v)
    assert significant_bins("psnr", r) == (3, 0) and significant_bins("lpips", r) == (0, 3)

    # no real difference, but each seed of the method lands elsewhere: the interval must hold 0
    noisy = [result(f"psi@m{s}", truth + o + rng.normal(0, 0.05, (n, v))) for s, o in enumerate([0.6, -0.5, -0.1])]
    r2 = compare(noisy, [result("psi@b", truth)] * 3)["cross_view"]["metrics"]["psnr"]
    assert all(lo < 0 < hi for lo, hi in zip(*r2["ci95"]))
    lo_one, _ = bootstrap_interval((np.array(noisy[0]["tasks"]["cross_view"]["per_image"]["psnr"]) - truth)[None])
    assert all(lo > 0.4 for lo in lo_one)  # one seed alone would have claimed +0.6 dB
    assert significant_bins("psnr", r2) == (0, 0)

    with pytest.raises(Exception, match="pair one per seed"):
        compare(method, base[:2])


def test_a_perfect_reenactment_scores_the_instrument_floors():
    """The truth as the prediction scores exactly what the instruments get wrong on the truth itself (stage 5's
    floors): expression, gaze and pose errors equal the floors image by image, PSNR is at its ceiling and the
    identity similarity is 1. A prediction with the source's expression reads differently from the truth."""
    from models import cameras as cam
    from models.genhead import params as P
    from models.genhead.ground_truth import GroundTruth, identity_ids
    from models.motion.synthetic_analyser import SyntheticAnalyser
    from pipeline_tasks.eval.instruments import Scorer
    from pipeline_tasks.eval.scoring import instrument_floors

    torch.manual_seed(0)
    gt = GroundTruth()
    ids = identity_ids(12, 4)
    yaw = torch.tensor([-0.5, -0.2, 0.2, 0.5])
    cams = cam.orbit_label(yaw, torch.zeros(4))
    e_drive = P.expression_vector(4, jaw_open=0.9, smile=0.6)
    gaze = torch.zeros(4, 2)
    source = gt.render(ids, cams, 32).rgb
    driving = gt.render(ids, cams, 32, expression=e_drive).rgb
    yp = torch.stack([torch.rad2deg(yaw), torch.zeros(4)], 1)
    analyser = SyntheticAnalyser(motion_dim=16, identity_dim=8, input_size=32, width=8).eval()
    with torch.no_grad():
        probe = PoseProbe(lam=1.0).fit(analyser.features(torch.cat([source, driving])), torch.cat([yp, yp]))
    scorer = Scorer(analyser, probe, "alex", "cpu")
    truth_read = scorer.analyse(driving)
    floors = instrument_floors(truth_read, e_drive, gaze, yp)
    perfect = scorer.score(driving, driving, e_drive, gaze, yp, truth_read)
    assert (perfect["psnr"] > 90).all() and torch.allclose(perfect["identity_similarity"], torch.ones(4), atol=1e-5)
    for k in ("expression_error", "gaze_error_deg", "pose_error_deg"):
        assert float(perfect[k].mean()) == pytest.approx(floors[k], rel=1e-5, abs=1e-6), k
    # the truth read without the precomputed reading gives the same scores (one analyser pass, no train mode)
    assert torch.allclose(
        scorer.score(driving, driving, e_drive, gaze, yp)["expression_error"], perfect["expression_error"]
    )
    frozen = scorer.score(source, driving, e_drive, gaze, yp, truth_read)
    assert not torch.allclose(frozen["expression_error"], perfect["expression_error"])
    assert (frozen["psnr"] < 60).all()


def test_the_blurred_truth_floors_read_the_blurred_images():
    """Stage 5 also reads the expression floor on the truth blurred by 1 and 2 px: each equals the error of
    scoring that blurred truth as a prediction, and differs from the sharp floor (the instrument sees the blur)."""
    from torchvision.transforms.functional import gaussian_blur

    from models import cameras as cam
    from models.genhead import params as P
    from models.genhead.ground_truth import GroundTruth, identity_ids
    from models.motion.synthetic_analyser import SyntheticAnalyser
    from pipeline_tasks.eval.instruments import Scorer
    from pipeline_tasks.eval.scoring import BLUR_SIGMAS_PX, blurred_expression_floors, instrument_floors

    torch.manual_seed(0)
    ids = identity_ids(12, 3)
    yaw = torch.tensor([-0.3, 0.0, 0.3])
    cams = cam.orbit_label(yaw, torch.zeros(3))
    expression = P.expression_vector(3, jaw_open=0.8)
    truth = GroundTruth().render(ids, cams, 32, expression=expression).rgb
    yp = torch.stack([torch.rad2deg(yaw), torch.zeros(3)], 1)
    analyser = SyntheticAnalyser(motion_dim=16, identity_dim=8, input_size=32, width=8).eval()
    with torch.no_grad():
        probe = PoseProbe(lam=1.0).fit(analyser.features(truth), yp)
    scorer = Scorer(analyser, probe, "alex", "cpu")
    floors = blurred_expression_floors(scorer, truth, expression)
    assert list(floors) == [f"expression_error_truth_blurred_{s:g}px" for s in BLUR_SIGMAS_PX]
    sharp = instrument_floors(scorer.analyse(truth), expression, torch.zeros(3, 2), yp)["expression_error"]
    blurred = gaussian_blur(truth, [7, 7], [1.0, 1.0])
    as_prediction = scorer.score(blurred, truth, expression, torch.zeros(3, 2), yp)["expression_error"]
    assert floors["expression_error_truth_blurred_1px"] == pytest.approx(float(as_prediction.mean()), rel=1e-5)
    assert floors["expression_error_truth_blurred_1px"] != pytest.approx(sharp, rel=1e-4)


def test_change_ceiling_is_a_blurred_perfect_model_and_falls_with_blur():
    """The ceiling is the change correlation of the truth pair blurred by σ px against the sharp pair: below 1 for
    a jaw that opens (its change is a few pixels wide), lower at 2 px than at 1 px, and equal to scoring the blurred
    truths as a prediction through ``change_correlation`` itself."""
    from torchvision.transforms.functional import gaussian_blur

    from models import cameras as cam
    from models.genhead import params as P
    from models.genhead.ground_truth import GroundTruth, identity_ids
    from pipeline_tasks.eval.scoring import BLUR_SIGMAS_PX, blurred_change_ceilings

    ids = identity_ids(12, 2)
    cams = cam.orbit_label(torch.tensor([-0.3, 0.3]), torch.zeros(2))
    gt = GroundTruth()
    base = gt.render(ids, cams, 32, expression=P.expression_vector(2)).rgb
    changed = gt.render(ids, cams, 32, expression=P.expression_vector(2, jaw_open=0.9)).rgb
    ceilings = blurred_change_ceilings(changed, base)
    assert list(ceilings) == [f"change_correlation_truth_blurred_{s:g}px" for s in BLUR_SIGMAS_PX]
    one, two = ceilings["change_correlation_truth_blurred_1px"], ceilings["change_correlation_truth_blurred_2px"]
    assert 0.0 < two < one < 0.99
    blur = lambda x: gaussian_blur(x, [7, 7], [1.0, 1.0])  # noqa: E731
    assert one == pytest.approx(float(change_correlation(blur(changed), blur(base), changed, base).mean()), rel=1e-5)
    assert float(change_correlation(changed, base, changed, base).mean()) == pytest.approx(1.0, abs=1e-5)
