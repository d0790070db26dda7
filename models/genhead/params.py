"""Parameters of the procedural GenHead: names, ranges, defaults and sampling, in one place.

A head is described by five tensors (leading dim = batch):

* ``shape``  α ``[B, 16]`` — standard normal; each entry becomes a bounded physical proportion
  ``factor = 1 + spread · tanh(α / 2)`` (so α = 0 is the average head and no α gives a broken one).
* ``expression`` β ``[B, 9]`` — named coefficients, 0 = neutral, 1 = strong (valid range [0, 1];
  values are clamped to it). Each is local in effect (see ``EXPRESSION_DOC``).
* ``pose`` γ ``[B, 3]`` — head yaw, pitch, roll in radians, a rigid rotation about ``NECK_PIVOT``
  (same sign conventions as ``models.cameras.rotation_yaw_pitch_roll``).
* ``gaze`` ``[B, 2]`` — eye yaw and pitch in radians relative to the head (+yaw looks towards +x,
  +pitch looks up).
* ``z`` ``[B, 24]`` — standard normal appearance code; entry i is turned into a uniform
  ``u_i = Φ(z_i)`` and read as listed in ``Z_FIELDS`` (skin tone, hair colour and style, eye and
  lip colour, texture phases, background colour).

"Left"/"right" are the subject's: the subject faces +z with +y up, so their left is +x.
"""

from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------- shape α
# name → (spread, what it scales)
SHAPE_FIELDS: dict[str, tuple[float, str]] = {
    "head_width": (0.10, "cranium and face width (x)"),
    "head_height": (0.08, "cranium height (y)"),
    "head_depth": (0.08, "cranium depth (z)"),
    "jaw_width": (0.18, "lower-face / jaw width"),
    "chin_length": (0.35, "chin size and how far it drops"),
    "chin_width": (0.30, "chin width"),
    "nose_length": (0.25, "nose protrusion and length"),
    "nose_width": (0.30, "nose tip and nostril width"),
    "nose_bridge": (0.35, "bridge height between the eyes"),
    "ear_size": (0.25, "ear height and protrusion"),
    "eye_spacing": (0.12, "distance between the eyes"),
    "eye_size": (0.15, "eye opening and eyeball size"),
    "lip_thickness": (0.35, "lip thickness"),
    "mouth_width": (0.18, "mouth width"),
    "brow_height": (0.30, "brow height above the eyes"),
    "cheek_fullness": (0.35, "cheek volume"),
}
SHAPE_NAMES: list[str] = list(SHAPE_FIELDS)
SHAPE_SPREAD = torch.tensor([v[0] for v in SHAPE_FIELDS.values()])

# ---------------------------------------------------------------- expression β
EXPRESSION_DOC: dict[str, str] = {
    "jaw_open": "lower jaw, chin, lower lip and lower teeth rotate down about the jaw hinge",
    "smile": "mouth corners up and out, cheeks raised",
    "mouth_wide": "mouth stretched sideways",
    "lip_pucker": "lips pushed forward and narrowed",
    "cheek_puff": "cheeks inflated sideways and forward",
    "blink_left": "subject's left (+x) upper eyelid closes",
    "blink_right": "subject's right (−x) upper eyelid closes",
    "brow_raise": "both brows lifted",
    "brow_furrow": "brows lowered and pulled together at the inner ends",
}
EXPRESSION_NAMES: list[str] = list(EXPRESSION_DOC)
EXPRESSION_RANGE = (0.0, 1.0)

# ---------------------------------------------------------------- pose γ, gaze
POSE_NAMES: list[str] = ["yaw", "pitch", "roll"]
POSE_SAMPLE_RANGE = torch.tensor([0.35, 0.2, 0.12])  # U(±range) rad when sampling stage-1 data
NECK_PIVOT = (0.0, -0.45, -0.05)
GAZE_NAMES: list[str] = ["eye_yaw", "eye_pitch"]
GAZE_RANGE = torch.tensor([0.4, 0.3])  # rad, clamped to this when rendering; sampled U(±0.8·range)

# ---------------------------------------------------------------- appearance z
Z_FIELDS: list[str] = [
    "skin_tone",  # 0: light → dark along a palette of skin tones
    "skin_warmth",  # 1: pinkish ↔ yellowish
    "hair_colour",  # 2: palette index (black, browns, auburn, blonde, grey)
    "hair_shade",  # 3: lighter/darker within the palette entry
    "eye_colour",  # 4: brown, hazel, green, blue, grey
    "lip_colour",  # 5: redness of the lips
    "hair_volume",  # 6: cap thickness
    "hair_length",  # 7: how low the hair reaches at the back/sides
    "hair_fringe",  # 8: how low the front hairline is (fringe / bangs)
    "hair_top",  # 9: a top puff / bun
    "hair_wave",  # 10: wave/curl amplitude of the hair surface
    "hair_part",  # 11: side parting position
    "texture_a",  # 12-15: phases/frequencies of the procedural skin and hair texture
    "texture_b",
    "texture_c",
    "texture_d",
    "bg_r",  # 16-18: background colour
    "bg_g",
    "bg_b",
    "brow_colour",  # 19: brows darker/lighter than the hair
    "blush",  # 20: cheek redness
    "hair_wave_freq",  # 21: wave frequency
    "beard_shadow",  # 22: darker jaw/chin stubble tint
    "spare",  # 23
]
Z_DIM = len(Z_FIELDS)

PARAM_DIMS = {"shape": len(SHAPE_NAMES), "expression": len(EXPRESSION_NAMES), "pose": 3, "gaze": 2, "z": Z_DIM}


def parameter_names() -> dict[str, list[str]]:
    """Names per parameter group (stored in every artifact's attrs)."""
    return {
        "shape": list(SHAPE_NAMES),
        "expression": list(EXPRESSION_NAMES),
        "pose": list(POSE_NAMES),
        "gaze": list(GAZE_NAMES),
        "z": list(Z_FIELDS),
    }


def shape_factors(alpha: torch.Tensor) -> torch.Tensor:
    """Bounded multiplicative proportions ``[B, 16]`` in ``1 ± spread`` from standard-normal α."""
    return 1.0 + SHAPE_SPREAD.to(alpha) * torch.tanh(alpha / 2.0)


def z_uniforms(z: torch.Tensor) -> torch.Tensor:
    """Map the normal appearance code to uniforms ``Φ(z)`` in (0, 1)."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def neutral(batch: int = 1) -> dict[str, torch.Tensor]:
    """Average shape, neutral expression, frontal pose, straight gaze, z = 0."""
    return {
        "shape": torch.zeros(batch, len(SHAPE_NAMES)),
        "expression": torch.zeros(batch, len(EXPRESSION_NAMES)),
        "pose": torch.zeros(batch, 3),
        "gaze": torch.zeros(batch, 2),
        "z": torch.zeros(batch, Z_DIM),
    }


def expression_vector(batch: int = 1, **named: float) -> torch.Tensor:
    """``[B, 9]`` expression from names, e.g. ``expression_vector(jaw_open=1.0)``."""
    e = torch.zeros(batch, len(EXPRESSION_NAMES))
    for k, v in named.items():
        if k not in EXPRESSION_NAMES:
            raise KeyError(f"unknown expression {k!r}; known: {EXPRESSION_NAMES}")
        e[:, EXPRESSION_NAMES.index(k)] = v
    return e


def sample_expression(
    n: int, generator: torch.Generator, p_neutral: float = 0.25, p_single: float = 0.35
) -> torch.Tensor:
    """Expressions ``[n, 9]``: neutral (p_neutral), one strong expression (p_single), or a mixture.

    Mixtures are sparse: each coefficient is active with probability 0.35 at a random strength,
    with blink left/right often tied (a real blink) and smile/pucker not both strong.
    """
    if not (0 <= p_neutral and 0 <= p_single and p_neutral + p_single <= 1):
        raise ValueError(f"need p_neutral, p_single ≥ 0 with sum ≤ 1, got {p_neutral}, {p_single}")
    e_dim = len(EXPRESSION_NAMES)
    u = torch.rand(n, generator=generator)
    kind_single = (u >= p_neutral) & (u < p_neutral + p_single)
    kind_mix = u >= p_neutral + p_single
    # single strong expression
    which = torch.randint(0, e_dim, (n,), generator=generator)
    strength = 0.6 + 0.4 * torch.rand(n, generator=generator)
    single = torch.zeros(n, e_dim)
    single[torch.arange(n), which] = strength
    # mixture
    active = torch.rand(n, e_dim, generator=generator) < 0.35
    mix = active * torch.rand(n, e_dim, generator=generator)
    tie = torch.rand(n, generator=generator) < 0.6
    bl, br = EXPRESSION_NAMES.index("blink_left"), EXPRESSION_NAMES.index("blink_right")
    mix[:, br] = torch.where(tie, mix[:, bl], mix[:, br])
    sm, pk = EXPRESSION_NAMES.index("smile"), EXPRESSION_NAMES.index("lip_pucker")
    mix[:, pk] = mix[:, pk] * (1 - mix[:, sm])
    out = torch.zeros(n, e_dim)
    out = torch.where(kind_single[:, None], single, out)
    out = torch.where(kind_mix[:, None], mix, out)
    return out


def sample_params(
    n: int, generator: torch.Generator, p_neutral: float = 0.25, p_single: float = 0.35, pose_scale: float = 1.0
) -> dict[str, torch.Tensor]:
    """Random identities: shape, expression, pose, gaze and z (each ``[n, ·]``), all from ``generator``."""
    shape = torch.randn(n, len(SHAPE_NAMES), generator=generator)
    z = torch.randn(n, Z_DIM, generator=generator)
    expression = sample_expression(n, generator, p_neutral, p_single)
    pose = sample_pose(n, generator, pose_scale)
    gaze = sample_gaze(n, generator)
    return {"shape": shape, "expression": expression, "pose": pose, "gaze": gaze, "z": z}


def sample_pose(n: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Head poses ``[n, 3]`` ~ U(±``POSE_SAMPLE_RANGE`` · scale) rad."""
    return (torch.rand(n, 3, generator=generator) * 2 - 1) * POSE_SAMPLE_RANGE * scale


def sample_gaze(n: int, generator: torch.Generator) -> torch.Tensor:
    """Eye gaze ``[n, 2]`` ~ U(±0.8 · ``GAZE_RANGE``) rad."""
    return (torch.rand(n, 2, generator=generator) * 2 - 1) * GAZE_RANGE * 0.8
