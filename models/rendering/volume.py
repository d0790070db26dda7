"""Generic volume rendering along rays: sampling, importance sampling, alpha compositing.

Shared by the tri-plane renderer (``models.rendering.triplane``) and the procedural head
generator (``models.genhead``). Nothing here knows about tri-planes or cameras: a *field* is any
callable ``field_fn(points [B,M,3], directions [B,M,3]) -> (sigma [B,M,1], features [B,M,C])``.

Quadrature (as EG3D's ``MipRayMarcher2``): S sorted samples along a ray define S−1 intervals;
each interval takes the mean of the raw density and features at its two ends, its length δ and
its midpoint depth. The density activation is applied by the *compositor* to that mean raw
density (``density_activation``):

* ``"softplus_shift"`` (default, EG3D / Portrait4D): σ = softplus(raw − 1), for neural fields
  whose raw output is unbounded;
* ``"none"``: the field already returns a non-negative density (e.g. an analytic SDF head);
* ``"relu"``: σ = max(raw, 0);
* or any callable ``raw -> σ``.

``feature_mix`` chooses an interval's feature: ``"mean"`` of its two ends (EG3D; right for
smooth neural fields) or ``"density"``, the ends weighted by their activated density, so that a
hard surface (an analytic SDF density that jumps from 0 to large) keeps its own colour instead of
being averaged with whatever the field returns just outside it.

Then α_i = 1 − exp(−σ_i δ_i), w_i = α_i ∏_{j<i}(1 − α_j), and per ray
``features = Σ w_i f_i`` (no background, no remapping: a caller adds ``transmittance · bg``),
``alpha = Σ w_i``, ``depth = Σ w_i t_i / alpha`` clamped to the sample range (``far`` where the
ray is empty). ``weights`` and ``t`` are per *interval*: shape ``[B, N, S − 1]``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

FieldFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
DensityActivation = str | Callable[[torch.Tensor], torch.Tensor]


def _bounds(x: torch.Tensor | float, b: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """Broadcast near/far given as a float, ``[B,1]`` or ``[B,N,1]`` to ``[B,N,1]``."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.dim() == 0:
        return x.expand(b, n, 1)
    if x.dim() == 2:  # [B,1] or [B,N]
        x = x[:, :, None] if x.shape[1] == n and n != 1 else x[:, None, :]
    if x.dim() != 3:
        raise ValueError(f"near/far must be a float, [B,1], [B,N] or [B,N,1]; got shape {tuple(x.shape)}")
    return x.expand(b, n, 1)


def stratified_samples(
    near: torch.Tensor,
    far: torch.Tensor,
    n_samples: int,
    perturb: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sorted depths ``[B, N, S]``: one sample per equal bin of [near, far] (bin centre if not perturbed).

    ``near``/``far`` are ``[B, N, 1]``.
    """
    b, n, _ = near.shape
    u = torch.linspace(0.0, 1.0, n_samples + 1, device=near.device, dtype=near.dtype)
    lower, upper = u[:-1], u[1:]
    if perturb:
        r = torch.rand(b, n, n_samples, device=near.device, dtype=near.dtype, generator=generator)
    else:
        r = torch.full((b, n, n_samples), 0.5, device=near.device, dtype=near.dtype)
    frac = lower + (upper - lower) * r
    return near + (far - near) * frac


def smooth_weights(weights: torch.Tensor, floor: float = 0.01) -> torch.Tensor:
    """EG3D's importance-weight smoothing: max-pool(2) then avg-pool(2), plus a floor. Same shape."""
    shape = weights.shape
    w = weights.reshape(-1, 1, shape[-1])
    w = F.max_pool1d(w, 2, 1, padding=1)
    w = F.avg_pool1d(w, 2, 1)
    return w.reshape(shape) + floor


def importance_samples(
    depths: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    perturb: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverse-CDF samples ``[B, N, n_samples]`` from the piecewise-constant pdf ``weights``.

    ``depths [B,N,S]`` are sorted sample depths (the S−1 interval edges' ends); ``weights
    [B,N,S−1]`` are per-interval (e.g. ``smooth_weights`` of a coarse pass). No gradient flows
    into the new depths.
    """
    depths = depths.detach()
    weights = weights.detach()
    if weights.shape[-1] != depths.shape[-1] - 1:
        raise ValueError(f"weights must have S-1={depths.shape[-1] - 1} intervals, got {weights.shape[-1]}")
    pdf = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)  # [B,N,S]
    cdf[..., -1] = 1.0
    lead = depths.shape[:-1]
    if perturb:
        u = torch.rand(*lead, n_samples, device=depths.device, dtype=depths.dtype, generator=generator)
    else:
        u = (torch.arange(n_samples, device=depths.device, dtype=depths.dtype) + 0.5) / n_samples
        u = u.expand(*lead, n_samples)
    u = u.contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(0, depths.shape[-1] - 1)
    above = idx.clamp(0, depths.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    d_lo, d_hi = depths.gather(-1, below), depths.gather(-1, above)
    denom = cdf_hi - cdf_lo
    t = torch.where(denom < 1e-8, torch.zeros_like(denom), (u - cdf_lo) / denom.clamp_min(1e-8))
    return d_lo + t * (d_hi - d_lo)


def activate_density(raw: torch.Tensor, activation: DensityActivation) -> torch.Tensor:
    """Map a raw field density to a non-negative density (see module docstring)."""
    if callable(activation):
        return activation(raw)
    if activation == "softplus_shift":
        return F.softplus(raw - 1.0)
    if activation == "none":
        return raw
    if activation == "relu":
        return F.relu(raw)
    raise ValueError(f"unknown density_activation {activation!r}; use 'softplus_shift', 'none', 'relu' or a callable")


def interval_weights(
    sigma: torch.Tensor, depths: torch.Tensor, density_activation: DensityActivation = "softplus_shift"
) -> torch.Tensor:
    """Compositing weights ``[B,N,S−1]`` of the intervals between sorted samples (no features)."""
    delta = depths[..., 1:] - depths[..., :-1]
    density = activate_density(0.5 * (sigma[..., 1:, 0] + sigma[..., :-1, 0]), density_activation)
    alpha_i = 1.0 - torch.exp(-density * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha_i[..., :1]), 1.0 - alpha_i + 1e-10], -1), -1)
    return alpha_i * trans[..., :-1]


def sample_weights(interval_w: torch.Tensor) -> torch.Tensor:
    """Per-sample weights ``[B,N,S]`` equivalent to interval weights with mean feature mixing:
    Σ_i w_i (f_i + f_{i+1})/2 = Σ_j f_j (w_{j−1} + w_j)/2."""
    pad = F.pad(interval_w, (1, 1))
    return 0.5 * (pad[..., :-1] + pad[..., 1:])


def _summary(weights: torch.Tensor, t_mid: torch.Tensor, feat: torch.Tensor) -> dict[str, torch.Tensor]:
    alpha = weights.sum(-1)
    t_min, t_max = t_mid[..., 0], t_mid[..., -1]
    depth = (weights * t_mid).sum(-1) / alpha.clamp_min(1e-8)
    depth = torch.where(alpha > 1e-8, depth, t_max)
    depth = torch.minimum(torch.maximum(depth, t_min), t_max)
    return {
        "features": feat,
        "alpha": alpha,
        "transmittance": 1.0 - alpha,
        "depth": depth,
        "weights": weights,
        "t": t_mid,
    }


def composite(
    sigma: torch.Tensor,
    features: torch.Tensor,
    depths: torch.Tensor,
    density_activation: DensityActivation = "softplus_shift",
    feature_mix: str = "mean",
) -> dict[str, torch.Tensor]:
    """Alpha-composite sorted samples (midpoint quadrature; see module docstring).

    ``sigma [B,N,S,1]`` raw density, ``features [B,N,S,C]``, ``depths [B,N,S]`` sorted.
    Returns ``features [B,N,C]``, ``alpha [B,N]``, ``transmittance [B,N]`` (= 1 − alpha, the
    background's share), ``depth [B,N]``, ``weights [B,N,S−1]``, ``t [B,N,S−1]`` (interval midpoints).
    """
    if depths.shape[-1] < 2:
        raise ValueError("compositing needs at least 2 samples per ray")
    t_mid = 0.5 * (depths[..., 1:] + depths[..., :-1])
    weights = interval_weights(sigma, depths, density_activation)
    if feature_mix == "mean":
        feat = torch.einsum("bns,bnsc->bnc", sample_weights(weights), features)
    elif feature_mix == "density":
        s = activate_density(sigma, density_activation)
        wa, wb, eps = s[..., :-1, :], s[..., 1:, :], 1e-6
        fa, fb = features[..., :-1, :], features[..., 1:, :]
        feat_mid = (wa * fa + wb * fb + eps * 0.5 * (fa + fb)) / (wa + wb + eps)
        feat = (weights[..., None] * feat_mid).sum(-2)
    else:
        raise ValueError(f"unknown feature_mix {feature_mix!r}; use 'mean' or 'density'")
    return _summary(weights, t_mid, feat)


def _query(field_fn: FieldFn, origins, directions, depths) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate the field at ``origins + depths·directions``; returns ``[B,N,S,1]``, ``[B,N,S,C]``."""
    b, n, s = depths.shape
    pts = origins[:, :, None, :] + depths[..., None] * directions[:, :, None, :]
    dirs = directions[:, :, None, :].expand(b, n, s, 3)
    sigma, feat = field_fn(pts.reshape(b, n * s, 3), dirs.reshape(b, n * s, 3))
    if sigma.shape[:2] != (b, n * s) or feat.shape[:2] != (b, n * s):
        raise ValueError(
            f"field_fn must return sigma [B,M,1] and features [B,M,C] for M={n * s}; "
            f"got {tuple(sigma.shape)} and {tuple(feat.shape)}"
        )
    return sigma.reshape(b, n, s, 1), feat.reshape(b, n, s, -1)


def render_rays(
    field_fn: FieldFn,
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    n_coarse: int,
    n_fine: int = 0,
    generator: torch.Generator | None = None,
    perturb: bool = True,
    density_activation: DensityActivation = "softplus_shift",
    feature_mix: str = "mean",
) -> dict[str, torch.Tensor]:
    """Render rays ``origins/directions [B,N,3]`` through ``field_fn`` (stratified + importance).

    ``near``/``far``: float, ``[B,1]`` or ``[B,N,1]``. The coarse pass takes ``n_coarse``
    stratified samples; if ``n_fine > 0`` its smoothed weights drive ``n_fine`` importance
    samples, and the final image composites all ``n_coarse + n_fine`` samples merged in depth
    order (EG3D), so the field is evaluated exactly ``n_coarse + n_fine`` times per ray.
    ``generator`` makes the random sample positions reproducible; ``perturb=False`` is
    deterministic. ``density_activation`` and ``feature_mix``: see the module docstring.

    Returns ``features``/``rgb`` (first 3 channels) ``[B,N,C]``, ``alpha``, ``transmittance``,
    ``depth`` ``[B,N]``, ``weights``/``t`` ``[B,N,S−1]`` with S = n_coarse + n_fine, and
    ``depths [B,N,S]`` (the sorted sample depths).
    """
    if origins.shape != directions.shape or origins.dim() != 3 or origins.shape[-1] != 3:
        raise ValueError(
            f"origins/directions must both be [B,N,3]; got {tuple(origins.shape)}, {tuple(directions.shape)}"
        )
    b, n, _ = origins.shape
    near_t = _bounds(near, b, n, origins)
    far_t = _bounds(far, b, n, origins)
    depths = stratified_samples(near_t, far_t, n_coarse, perturb=perturb, generator=generator)
    sigma, feat = _query(field_fn, origins, directions, depths)
    if n_fine > 0:
        with torch.no_grad():  # the coarse weights only place the fine samples
            w = smooth_weights(interval_weights(sigma, depths, density_activation))
        fine = importance_samples(depths, w, n_fine, perturb=perturb, generator=generator)
        sigma_f, feat_f = _query(field_fn, origins, directions, fine)
        depths = torch.cat([depths, fine], -1)
        order = depths.argsort(-1)
        depths = depths.gather(-1, order)
        sigma = torch.cat([sigma, sigma_f], -2).gather(-2, order[..., None])
        if feature_mix == "mean":
            # composite the weights in depth order, then apply them to the unsorted coarse and
            # fine features (same result as sorting the features, without gathering C channels)
            weights = interval_weights(sigma, depths, density_activation)
            sw = torch.zeros_like(depths).scatter(-1, order, sample_weights(weights))
            feat = torch.einsum("bns,bnsc->bnc", sw[..., :n_coarse], feat) + torch.einsum(
                "bns,bnsc->bnc", sw[..., n_coarse:], feat_f
            )
            out = _summary(weights, 0.5 * (depths[..., 1:] + depths[..., :-1]), feat)
        else:
            feat_all = torch.cat([feat, feat_f], -2)
            feat = feat_all.gather(-2, order[..., None].expand(*order.shape, feat_all.shape[-1]))
            out = composite(sigma, feat, depths, density_activation, feature_mix)
    else:
        out = composite(sigma, feat, depths, density_activation, feature_mix)
    out["rgb"] = out["features"][..., :3]
    out["depths"] = depths
    return out


def to_image(x: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """Per-ray values ``[B, N, C]`` or ``[B, N]`` → images ``[B·N/(H·W), C, H, W]``.

    Rays are row-major per image (``models.cameras.pixel_grid``); several images per batch
    entry (e.g. K views of one tri-plane, N = K·H·W) become consecutive images.
    """
    width = height if width is None else width
    if x.dim() == 2:
        x = x[..., None]
    b, n, c = x.shape
    if n % (height * width):
        raise ValueError(f"{n} rays per batch entry is not a multiple of {height}x{width}")
    return x.reshape(b * (n // (height * width)), height, width, c).permute(0, 3, 1, 2).contiguous()
