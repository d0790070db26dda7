"""Procedural GenHead: an analytic, batched signed-distance head rendered with the project's cameras.

Why analytic: no pretrained GenHead can be had offline, and an analytic head gives exact ground
truth (any identity × expression × pose × camera) for everything downstream.

Geometry (head-local frame = world frame at pose 0: y up, face along +z, origin at the head centre)
is a smooth-min blend of signed distances: cranium, upper face, jaw (rotates with ``jaw_open``),
chin, cheeks, nose (bridge + tip + nostril wings), ears (with a concha), neck, eye sockets,
eyeballs (iris/pupil follow gaze; colour only), eyelid shells cut by planes that close with
blink, brows, lips around a carved mouth cavity with upper/lower teeth, and hair (a cap over the
cranium cut at a hairline, plus back drape, top puff and waves, all from ``z``). The SDF is
clipped to the head box ``[-0.65, 0.65]³`` (in the head frame, so pose stays exactly rigid).

Rendering (fast, ~25 SDF evaluations per covered ray): rays from ``models.cameras.generate_rays``
are moved into the head frame (inverse pose about ``NECK_PIVOT``), clipped to the head box and to
``ray_bounds``; sphere tracing finds the surface (or the closest approach, for anti-aliased
silhouettes); then ``n_band`` volume samples in a narrow band around it are composited with
``models.rendering.volume.composite`` (same quadrature as Ψ's renderer) using the density
``σ = s · sigmoid(−s · sdf)`` with sharpness ``s``. Colour (albedo from ``z`` × Lambert shading
from a light fixed in the head frame, so appearance is view-independent and pose is rigid) is taken
at the surface point and composited over a per-sample background colour.

Outputs: ``rgb [B,3,H,W]`` in [−1, 1] (background included), ``alpha [B,1,H,W]`` in [0, 1],
``depth [B,1,H,W]``: alpha-weighted distance along the unit ray from the camera centre (the ray's
far bound where alpha is 0). Deterministic: no randomness inside ``render``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from models import cameras as cam
from models.genhead import params as P
from models.rendering.volume import composite

BOX_HALF = cam.BOX_HALF


class HeadRender(NamedTuple):
    rgb: torch.Tensor  # [B,3,H,W] (or [B,V,3,H,W]) in [−1, 1]
    alpha: torch.Tensor  # [B,1,H,W] in [0, 1]
    depth: torch.Tensor  # [B,1,H,W] distance along the unit ray


# ---------------------------------------------------------------------------------- SDF helpers
def _smin(a, b, k: float):
    """Polynomial smooth minimum (union with a fillet of size k)."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k: float):
    return -_smin(-a, -b, k)


def _ell(x, y, z, rx, ry, rz):
    """Approximate ellipsoid distance (iq's k0·(k0−1)/k1, tight near the surface), a lower bound."""
    ax, ay, az = x / rx, y / ry, z / rz
    k0 = torch.sqrt(ax * ax + ay * ay + az * az)
    bx, by, bz = ax / rx, ay / ry, az / rz
    k1 = torch.sqrt(bx * bx + by * by + bz * bz).clamp_min(1e-6)
    # far from a flat ellipsoid iq's estimate is much too small (smooth unions would then reach far
    # beyond the part): |q| − max(r) is also a lower bound, take the larger
    rmax = torch.maximum(torch.maximum(torch.as_tensor(rx), torch.as_tensor(ry)), torch.as_tensor(rz))
    return torch.maximum(k0 * (k0 - 1.0) / k1, torch.sqrt(x * x + y * y + z * z) - rmax)


def _len3(x, y, z):
    return torch.sqrt(x * x + y * y + z * z)


class _Rows:
    """Per-ray parameters: a ``[K, ...]`` tensor with named rows (row i is contiguous)."""

    def __init__(self, table: torch.Tensor, index: dict[str, int]):
        self.t, self.i = table, index

    def __getattr__(self, name):
        try:
            return self.t[self.i[name]]
        except KeyError:
            raise AttributeError(name) from None

    def take(self, sel) -> "_Rows":
        return _Rows(self.t[:, sel], self.i)

    def unsqueeze(self) -> "_Rows":
        return _Rows(self.t[..., None], self.i)


# ------------------------------------------------------------------------- derived parameters
_SKIN = torch.tensor(
    [
        [0.97, 0.82, 0.72],
        [0.93, 0.74, 0.61],
        [0.85, 0.64, 0.49],
        [0.72, 0.52, 0.37],
        [0.56, 0.38, 0.26],
        [0.40, 0.26, 0.18],
    ]
)
_HAIR = torch.tensor(
    [
        [0.05, 0.045, 0.04],
        [0.17, 0.10, 0.06],
        [0.34, 0.21, 0.11],
        [0.52, 0.24, 0.10],
        [0.82, 0.66, 0.40],
        [0.62, 0.61, 0.60],
    ]
)
_EYES = torch.tensor(
    [[0.28, 0.15, 0.07], [0.45, 0.33, 0.14], [0.24, 0.44, 0.24], [0.22, 0.42, 0.68], [0.44, 0.50, 0.55]]
)
_LIGHT = torch.nn.functional.normalize(torch.tensor([-0.35, 0.5, 0.8]), dim=0)  # head frame


def _palette(table: torch.Tensor, u: torch.Tensor, smooth: bool) -> torch.Tensor:
    n = table.shape[0]
    if not smooth:
        return table[(u * n).long().clamp(0, n - 1)]
    pos = u * (n - 1)
    i0 = pos.floor().long().clamp(0, n - 2)
    f = (pos - i0)[:, None]
    return table[i0] * (1 - f) + table[i0 + 1] * f


def derive(shape: torch.Tensor, expression: torch.Tensor, gaze: torch.Tensor, z: torch.Tensor) -> tuple[dict, dict]:
    """Per-sample geometry rows (``[B]`` each) and colours (``[B,3]`` each) from the parameters."""
    f = P.shape_factors(shape)
    F_ = {n: f[:, i] for i, n in enumerate(P.SHAPE_NAMES)}
    e = expression.clamp(*P.EXPRESSION_RANGE)
    E = {n: e[:, i] for i, n in enumerate(P.EXPRESSION_NAMES)}
    u = P.z_uniforms(z)
    U = {n: u[:, i] for i, n in enumerate(P.Z_FIELDS)}
    g = torch.maximum(torch.minimum(gaze, P.GAZE_RANGE.to(gaze)), -P.GAZE_RANGE.to(gaze))

    hw, hh, hd = F_["head_width"], F_["head_height"], F_["head_depth"]
    G: dict[str, torch.Tensor] = {}
    # cranium / face
    G["cr_rx"], G["cr_ry"], G["cr_rz"] = 0.31 * hw, 0.41 * hh, 0.40 * hd
    G["cr_y"] = 0.12 + 0.41 * (hh - 1.0) * 0.5
    G["uf_rx"] = 0.28 * hw
    G["jw_rx"] = 0.235 * F_["jaw_width"] * (0.5 + 0.5 * hw)
    jaw = E["jaw_open"]
    G["jaw_c"], G["jaw_s"] = torch.cos(0.32 * jaw), torch.sin(0.32 * jaw)
    chin = F_["chin_length"]
    G["chin_y"] = -0.345 - 0.035 * (chin - 1.0)
    G["chin_rx"], G["chin_ry"] = 0.085 * F_["chin_width"], 0.07 * chin
    # cheeks (smile raises, puff inflates)
    puff, smile = E["cheek_puff"], E["smile"]
    G["ck_x"] = 0.145 + 0.045 * puff
    G["ck_y"] = -0.08 + 0.04 * smile
    G["ck_z"] = 0.2 + 0.05 * puff + 0.01 * smile
    ckr = F_["cheek_fullness"] * (1.0 + 0.55 * puff)
    G["ck_r"] = 0.078 * ckr
    # nose
    nl, nw = F_["nose_length"], F_["nose_width"]
    G["nb_z"] = 0.34 + 0.02 * (F_["nose_bridge"] - 1.0) * 2
    G["nt_z"] = 0.33 + 0.075 * nl
    G["nt_y"] = -0.075 - 0.03 * (nl - 1.0)
    G["nt_r"] = 0.043 * nw
    G["nw_x"] = 0.036 * nw
    # eyes
    es, esz = F_["eye_spacing"], F_["eye_size"]
    G["ey_x"], G["ey_y"] = 0.115 * es, 0.045 + 0.0 * es
    G["ey_r"] = 0.052 * (0.5 + 0.5 * esz)
    G["ey_z"] = 0.275
    br = E["brow_raise"]
    fur = E["brow_furrow"]
    open_u = 0.38 * esz + 0.1 * br - 0.08 * fur
    G["lid_u_l"] = open_u - E["blink_left"] * (open_u + 0.55)
    G["lid_u_r"] = open_u - E["blink_right"] * (open_u + 0.55)
    G["lid_l"] = -0.42 * esz + 0.2 * smile
    gy, gp = g[:, 0], g[:, 1]
    G["gz_x"], G["gz_y"], G["gz_z"] = torch.sin(gy) * torch.cos(gp), torch.sin(gp), torch.cos(gy) * torch.cos(gp)
    # brows
    G["bw_y"] = 0.045 + 0.082 * F_["brow_height"] + 0.05 * br - 0.025 * fur
    G["bw_fur"] = fur
    G["bw_x"] = 0.12 * es - 0.018 * fur
    # ears
    G["ear_x"] = 0.295 * hw + 0.012
    G["ear_s"] = F_["ear_size"]
    # mouth
    mw, lip = F_["mouth_width"], F_["lip_thickness"]
    wide, puck = E["mouth_wide"], E["lip_pucker"]
    G["mo_rx"] = 0.078 * mw * (1.0 + 0.32 * wide + 0.2 * smile - 0.38 * puck)
    G["lip_t"] = lip * (1.0 + 0.45 * puck - 0.25 * wide)
    G["mo_z"] = 0.292 + 0.045 * puck
    G["mo_curl"] = 7.0 * smile
    G["cav_ry"] = 0.004 + 0.012 * wide + 0.007 * smile
    # hair
    G["h_thick"] = 0.02 + 0.04 * U["hair_volume"]
    G["h_front"] = 0.29 - 0.07 * U["hair_fringe"]  # stays above the brows
    G["h_arc"] = 0.05 - 0.1 * U["hair_fringe"]
    G["h_back"] = -0.05 - 0.32 * U["hair_length"]
    G["h_len"] = U["hair_length"]
    G["h_top"] = ((U["hair_top"] - 0.55) / 0.45).clamp_min(0.0)
    G["h_wave"] = 0.009 * U["hair_wave"] ** 2
    G["h_freq"] = 10.0 + 10.0 * U["hair_wave_freq"]
    G["h_part"] = (U["hair_part"] - 0.5) * 0.25

    return G, _colours(U)


def _colours(U: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-sample colours (``[B,3]`` each; ``tex`` ``[B,4]``) from the z uniforms."""
    skin = _palette(_SKIN, U["skin_tone"], smooth=True)
    skin = skin + (U["skin_warmth"][:, None] - 0.5) * torch.tensor([0.04, 0.01, -0.05])
    hair = _palette(_HAIR, U["hair_colour"], smooth=False) * (0.8 + 0.4 * U["hair_shade"][:, None])
    eye = _palette(_EYES, U["eye_colour"], smooth=False)
    lip_red = torch.tensor([0.72, 0.26, 0.28])
    lips = skin * torch.tensor([0.86, 0.62, 0.62]) * (1 - 0.5 * U["lip_colour"][:, None]) + lip_red * 0.5 * U[
        "lip_colour"
    ][:, None] * (0.6 + 0.4 * skin.mean(-1, keepdim=True))
    brow = hair * (0.6 + 0.5 * U["brow_colour"][:, None])
    brow = torch.minimum(brow, skin * 0.45)
    bg = 0.12 + 0.76 * torch.stack([U["bg_r"], U["bg_g"], U["bg_b"]], -1)
    tex = torch.stack([U["texture_a"], U["texture_b"], U["texture_c"], U["texture_d"]], -1)
    C = {
        "skin": skin.clamp(0, 1),
        "hair": hair.clamp(0, 1),
        "eye": eye,
        "lips": lips.clamp(0, 1),
        "brow": brow.clamp(0, 1),
        "bg": bg,
        "tex": tex,
        "blush": U["blush"][:, None].expand(-1, 3),
        "beard": U["beard_shadow"][:, None].expand(-1, 3),
    }
    return C


# ------------------------------------------------------------------------------------ the SDF
def head_sdf(x, y, z, G: _Rows, parts: bool = False):
    """Signed distance of the head at head-frame points (x, y, z same shape; ``G`` rows broadcast).

    With ``parts=True`` also returns the component distances used to colour the surface.
    """
    ax = x.abs()
    side_left = x > 0
    # --- cranium, upper face, jaw (rotated about the hinge by jaw_open), chin
    cr = _ell(x, y - G.cr_y, z + 0.03, G.cr_rx, G.cr_ry, G.cr_rz)
    uf = _ell(x, y + 0.03, z - 0.06, G.uf_rx, 0.22, 0.285)
    d = _smin(cr, uf, 0.1)
    hy, hz = y + 0.02, z + 0.06  # jaw hinge (0, -0.02, -0.06)
    jy = hy * G.jaw_c + hz * G.jaw_s - 0.02
    jz = -hy * G.jaw_s + hz * G.jaw_c - 0.06
    jaw = _ell(x, jy + 0.215, jz - 0.055, G.jw_rx, 0.165, 0.255)
    d = _smin(d, jaw, 0.07)
    chin = _ell(x, jy - G.chin_y, jz - 0.2, G.chin_rx, G.chin_ry, 0.085)
    d = _smin(d, chin, 0.05)
    # --- cheeks
    ck = _len3(ax - G.ck_x, y - G.ck_y, z - G.ck_z) - G.ck_r
    d = _smin(d, ck, 0.06)
    # --- neck (clipped at the top inside the head, at the bottom by the box)
    nk = torch.maximum(torch.sqrt(x * x + (z + 0.07) ** 2) - 0.145 * (G.uf_rx / 0.28) ** 0.5, y + 0.18)
    d = _smin(d, nk, 0.08)
    # --- nose: bridge capsule to tip with tapering radius, plus nostril wings
    by, bz = y - 0.06, z - G.nb_z
    ty, tz = G.nt_y - 0.06, G.nt_z - G.nb_z  # tip relative to bridge top
    h = ((by * ty + bz * tz) / (ty * ty + tz * tz)).clamp(0.0, 1.0)
    nose = torch.sqrt(x * x + (by - h * ty) ** 2 + (bz - h * tz) ** 2) - (0.017 + h * (G.nt_r - 0.017))
    wings = _ell(ax - G.nw_x, y - G.nt_y + 0.012, z - G.nt_z + 0.04, 0.027, 0.024, 0.028)
    nose = _smin(nose, wings, 0.02)
    d = _smin(d, nose, 0.025)
    # --- ears (tilted so the back edge stands off the head), with a concha
    es = G.ear_s
    ez = z + 0.05
    ex = ax - G.ear_x - 0.012 * es + 0.25 * ez
    ear = _ell(ex, y - 0.0, ez, 0.022, 0.085 * es, 0.05 * es)
    concha = _ell(ex - 0.022, y + 0.005, ez + 0.005, 0.018, 0.05 * es, 0.028 * es)
    ear = _smax(ear, -concha, 0.01)
    d = _smin(d, ear, 0.015)
    # --- eye sockets
    qx, qy, qz = ax - G.ey_x, y - G.ey_y, z - G.ey_z
    sock = _ell(qx, qy, qz - 0.035, 0.068, 0.048, 0.05)
    d = _smax(d, -sock, 0.015)
    # --- brows: lowered and pulled in at the inner end by furrow
    inner = (G.bw_x - ax).clamp_min(0.0)
    bwy = y - G.bw_y + G.bw_fur * 0.7 * inner
    bq = (ax - G.bw_x, bwy + 3.0 * (ax - G.bw_x) ** 2, z - 0.322)
    brow = _ell(*bq, 0.06, 0.015, 0.022)
    d = _smin(d, brow, 0.012)
    # --- lips (upper on the skull, lower on the jaw), curled by smile; cavity; teeth
    lips, cav, teeth = _mouth(x, y, z, jy, jz, G)
    d = _smin(d, lips, 0.012)
    d = _smax(d, -cav, 0.008)
    d = torch.minimum(d, teeth)
    # --- eyelids: shells around the eyeball cut by planes at elevation angles; blink per side
    lids, eyes = _eyelids_and_eyes(qx, qy, qz, side_left, G)
    d = _smin(d, lids, 0.006)
    d = torch.minimum(d, eyes)
    # --- hair: cap over the cranium above a hairline; drape at the back; top puff; waves
    hair = _hair(x, y, z, ax, G)
    d = _smin(d, hair, 0.012)
    # --- clip to the head box (head frame)
    box = torch.maximum(torch.maximum(ax, y.abs()), z.abs()) - BOX_HALF
    d = torch.maximum(d, box)
    if not parts:
        return d
    # brow footprint in the face plane (colours the brows wherever the blend hides the ridge)
    bx = (ax - G.bw_x) / 0.062
    by2 = (bwy + 3.0 * (ax - G.bw_x) ** 2) / 0.016
    brow2d = torch.sqrt(bx * bx + by2 * by2) - 1.0 + (0.22 - z).clamp_min(0.0) * 100.0
    return d, {
        "brow2d": brow2d,
        "hair": hair,
        "eyes": eyes,
        "lids": lids,
        "brow": brow,
        "lips": lips,
        "cav": cav,
        "teeth": teeth,
        "ck": ck,
        "jaw": jaw,
        "nose": nose,
    }


def _mouth(x, y, z, jy, jz, G: _Rows):
    """The lips (upper on the skull, lower on the jaw), curled by smile; the mouth cavity; the teeth.
    ``jy, jz``: head-frame y, z rotated with the jaw."""
    curl = G.mo_curl * x * x
    lt = G.lip_t
    ulip = _ell(x, y + 0.163 - curl, z - G.mo_z, G.mo_rx, 0.021 * lt, 0.034)
    ljy = jy + 0.005  # lower lip follows the jaw
    llip = _ell(x, ljy + 0.197 - curl, jz - G.mo_z + 0.006, G.mo_rx * 0.95, 0.024 * lt, 0.034)
    lips = _smin(ulip, llip, 0.012)
    # cavity spans from the upper lip line to the (moving) lower lip line
    top, bot = -0.175, -0.182 - (0.177 * (1.0 - G.jaw_c) + 0.35 * G.jaw_s)  # lower lip drops with the jaw
    cy = 0.5 * (top + bot)
    cry = 0.5 * (top - bot) + G.cav_ry
    cav = _ell(x, y - cy - curl, z - 0.235, G.mo_rx * 0.92, cry, 0.09)
    ut = _ell(x, y + 0.169, z - 0.262, 0.052, 0.014, 0.018)
    lt_ = _ell(x, jy + 0.191, jz - 0.258, 0.048, 0.013, 0.017)
    teeth = torch.minimum(ut, lt_)
    return lips, cav, teeth


def _eyelids_and_eyes(qx, qy, qz, side_left, G: _Rows):
    """Eyelids (shells around the eyeball cut by planes at elevation angles; blink per side) and eyeballs,
    at points relative to the eye centre."""
    re = G.ey_r
    r = _len3(qx, qy, qz)
    shell = (r - re - 0.008).abs() - 0.0065
    th_u = torch.where(side_left, G.lid_u_l, G.lid_u_r)
    up = -(qy * torch.cos(th_u) - qz * torch.sin(th_u))
    th_l = G.lid_l
    lo = qy * torch.cos(th_l) - qz * torch.sin(th_l)
    lids = torch.maximum(shell, torch.minimum(up, lo))
    eyes = r - re
    return lids, eyes


def _hair(x, y, z, ax, G: _Rows):
    """Hair: a cap over the cranium above a hairline, a drape at the back, a top puff, waves."""
    ang = torch.atan2(x, z)
    wave = G.h_wave * torch.sin(G.h_freq * ang + 5.0 * y)  # locks running down from the crown
    cap = _ell(x, y - G.cr_y - 0.01, z + 0.035, G.cr_rx + G.h_thick, G.cr_ry + G.h_thick, G.cr_rz + G.h_thick) - wave
    # hairline: h_front over the forehead, just above the ears at the sides, h_back behind the ears
    side = torch.sigmoid((ax - 0.2) / 0.03)
    front = G.h_front + G.h_arc * (ax / 0.2).clamp(max=1.0) ** 2  # arched fringe or receding temples
    front = front + (torch.minimum(front, torch.full_like(front, 0.13)) - front) * side
    wb = torch.sigmoid((-0.13 - z) / 0.04)
    line = front + (G.h_back - front) * wb
    hair = _smax(cap, line - y, 0.03)
    drape = _ell(x, y - 0.05 + 0.25 * G.h_len, z + 0.16, G.cr_rx + G.h_thick + 0.01, 0.18 + 0.28 * G.h_len, 0.26)
    drape = _smax(drape - wave, z + 0.13, 0.04)
    drape = _smax(drape, line - y, 0.03)
    hair = _smin(hair, drape, 0.04)
    puff = _ell(x - G.h_part, y - 0.44, z + 0.06, 0.2, 0.04 + 0.1 * G.h_top, 0.22) + 0.08 * (1.0 - G.h_top) - wave
    hair = _smin(hair, puff, 0.06)
    return hair


# The head (any parameters) lies inside ELLIPSOID ∪ NECK_CYLINDER (checked by tests/models/genhead).
BOUND_CENTRE = (0.0, 0.05, -0.02)
BOUND_RADII = (0.5, 0.64, 0.6)
NECK_AXIS_Z, NECK_RADIUS, NECK_TOP = -0.1, 0.47, 0.1


def _bound_interval(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit distances of rays ``[M,3]`` through the analytic bound (entry > exit: miss)."""
    c = torch.tensor(BOUND_CENTRE)
    r = torch.tensor(BOUND_RADII)
    oe, de = (o - c) / r, d / r
    a = (de * de).sum(-1)
    b = (oe * de).sum(-1)
    cc = (oe * oe).sum(-1) - 1.0
    disc = b * b - a * cc
    sq = disc.clamp_min(0.0).sqrt()
    e_in, e_out = (-b - sq) / a, (-b + sq) / a
    miss = disc <= 0
    big = torch.full_like(e_in, 1e9)
    e_in, e_out = torch.where(miss, big, e_in), torch.where(miss, -big, e_out)
    # vertical cylinder x² + (z − NECK_AXIS_Z)² ≤ R², y ∈ [−BOX_HALF, NECK_TOP]
    ox, oz, dx, dz = o[:, 0], o[:, 2] - NECK_AXIS_Z, d[:, 0], d[:, 2]
    a2 = (dx * dx + dz * dz).clamp_min(1e-12)
    b2 = ox * dx + oz * dz
    c2 = ox * ox + oz * oz - NECK_RADIUS**2
    disc2 = b2 * b2 - a2 * c2
    sq2 = disc2.clamp_min(0.0).sqrt()
    c_in, c_out = (-b2 - sq2) / a2, (-b2 + sq2) / a2
    dy = torch.where(d[:, 1].abs() < 1e-9, torch.full_like(dx, 1e-9), d[:, 1])
    y0, y1 = (-BOX_HALF - o[:, 1]) / dy, (NECK_TOP - o[:, 1]) / dy
    c_in = torch.maximum(c_in, torch.minimum(y0, y1))
    c_out = torch.minimum(c_out, torch.maximum(y0, y1))
    miss2 = (disc2 <= 0) | (c_in >= c_out)
    c_in, c_out = torch.where(miss2, big, c_in), torch.where(miss2, -big, c_out)
    return torch.minimum(e_in, c_in), torch.maximum(e_out, c_out)


# ------------------------------------------------------------------------------ the generator
class ProceduralGenHead:
    """Analytic head generator with GenHead's interface: ``render(α, β, γ, gaze, z, cameras, res)``.

    ``sharpness`` s sets the density σ = s·sigmoid(−s·sdf) (larger: crisper silhouettes);
    ``n_band`` volume samples per covered ray; ``max_steps`` sphere-tracing steps; ``hit_eps``
    the sphere-tracing tolerance as a fraction of a pixel's footprint (the band fixes depth/alpha);
    ``max_rays`` bounds memory (rays are processed in chunks of this many).
    ``num_threads``: torch threads while rendering (restored after). Default 1: the work is many
    small element-wise ops, which gain little from threads and slow down badly (10–50×) when the
    cores are shared; run several processes to use more cores. ``None`` leaves torch's setting.
    """

    backend = "procedural"

    def __init__(
        self,
        sharpness: float = 200.0,
        n_band: int = 8,
        max_steps: int = 28,
        hit_eps: float = 0.25,
        max_rays: int = 1 << 18,
        num_threads: int | None = 1,
    ):
        if sharpness <= 0 or n_band < 2 or max_steps < 1:
            raise ValueError(f"need sharpness > 0, n_band ≥ 2, max_steps ≥ 1 (got {sharpness}, {n_band}, {max_steps})")
        self.sharpness, self.n_band, self.max_steps, self.hit_eps, self.max_rays = (
            float(sharpness),
            n_band,
            max_steps,
            hit_eps,
            max_rays,
        )
        self.num_threads = num_threads

    # -- public -------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "backend": self.backend,
            "sharpness": self.sharpness,
            "n_band": self.n_band,
            "max_steps": self.max_steps,
            "hit_eps": self.hit_eps,
        }

    def render_params(self, params: dict[str, torch.Tensor], cameras: torch.Tensor, resolution: int) -> HeadRender:
        return self.render(
            params["shape"], params["expression"], params["pose"], params["gaze"], params["z"], cameras, resolution
        )

    @torch.no_grad()
    def render(self, shape, expression, pose, gaze, z, cameras, resolution: int) -> HeadRender:
        """Render ``B`` heads. ``cameras`` is ``[B,25]`` (one view each) or ``[B,V,25]`` (V views each:
        outputs then have shape ``[B,V,C,H,W]``). Parameters are ``[B, dim]`` (see ``params``)."""
        cameras = torch.as_tensor(cameras, dtype=torch.float32)
        tensors = [torch.as_tensor(t, dtype=torch.float32) for t in (shape, expression, pose, gaze, z)]
        b = tensors[0].shape[0]
        for name, t in zip(("shape", "expression", "pose", "gaze", "z"), tensors):
            want = P.PARAM_DIMS[name]
            if t.ndim != 2 or t.shape != (b, want):
                raise ValueError(f"{name} must be [B={b}, {want}], got {tuple(t.shape)}")
        multi = cameras.ndim == 3
        if cameras.shape[0] != b or cameras.shape[-1] != 25 or cameras.ndim not in (2, 3):
            raise ValueError(f"cameras must be [B={b}, 25] or [B={b}, V, 25], got {tuple(cameras.shape)}")
        v = cameras.shape[1] if multi else 1
        if multi:
            tensors = [t.repeat_interleave(v, 0) for t in tensors]
            cameras = cameras.reshape(b * v, 25)
        prev = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            out = self._render_flat(*tensors, cameras, int(resolution))
        finally:
            torch.set_num_threads(prev)
        if multi:
            out = HeadRender(*(o.reshape(b, v, *o.shape[1:]) for o in out))
        return out

    # -- internals ------------------------------------------------------------------------
    def _render_flat(self, shape, expression, pose, gaze, z, cameras, res: int) -> HeadRender:
        n = shape.shape[0]
        G, C = derive(shape, expression, gaze, z)
        keys = list(G)
        table = torch.stack([torch.as_tensor(G[k], dtype=torch.float32).expand(n) for k in keys], 0)  # [K, n]
        index = {k: i for i, k in enumerate(keys)}

        origins, dirs = cam.generate_rays(cameras, res)  # world, [n, HW, 3]
        near, far = cam.ray_bounds(cameras)  # [n, 1]
        rot = cam.rotation_yaw_pitch_roll(pose[:, 0], pose[:, 1], pose[:, 2])  # head→world
        pivot = torch.tensor(P.NECK_PIVOT)
        o_loc = (origins - pivot) @ rot + pivot  # Rᵀ(p − c) + c, row-vector form
        d_loc = dirs @ rot
        hw = res * res
        o_loc, d_loc = o_loc.reshape(-1, 3), d_loc.reshape(-1, 3)
        sample = torch.arange(n).repeat_interleave(hw)
        t_near = near.expand(n, hw).reshape(-1)
        t_far = far.expand(n, hw).reshape(-1)

        rgb = torch.empty(n * hw, 3)
        alpha = torch.empty(n * hw)
        depth = torch.empty(n * hw)
        for s in range(0, n * hw, self.max_rays):
            sl = slice(s, min(s + self.max_rays, n * hw))
            a_, d_, c_ = self._render_rays(
                o_loc[sl], d_loc[sl], t_near[sl], t_far[sl], sample[sl], table, index, C, res
            )
            rgb[sl], alpha[sl], depth[sl] = c_, a_, d_
        bg = C["bg"][sample]
        rgb = rgb * alpha[:, None] + bg * (1 - alpha[:, None])
        rgb = rgb.reshape(n, res, res, 3).permute(0, 3, 1, 2) * 2 - 1
        return HeadRender(rgb.contiguous(), alpha.reshape(n, 1, res, res), depth.reshape(n, 1, res, res))

    def _render_rays(self, o, d, t_near, t_far, sample, table, index, C, res: int):
        m = o.shape[0]
        s = self.sharpness
        # clip to the head's analytic bounds (ellipsoid ∪ neck cylinder), the head box and near/far
        b_in, b_out = _bound_interval(o, d)
        inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
        t0 = (-BOX_HALF - o) * inv
        t1 = (BOX_HALF - o) * inv
        tin = torch.maximum(torch.maximum(torch.minimum(t0, t1).amax(-1), t_near), b_in)
        tout = torch.minimum(torch.minimum(torch.maximum(t0, t1).amin(-1), t_far), b_out)
        alpha = torch.zeros(m)
        depth = t_far.clone()
        rgb = torch.zeros(m, 3)
        idx = torch.nonzero(tin < tout).squeeze(1)
        if idx.numel() == 0:
            return alpha, depth, rgb
        # --- sphere tracing with compaction
        ro, rd, t, t_end = o[idx], d[idx], tin[idx].clone(), tout[idx]
        rows = _Rows(table[:, sample[idx]], index)
        best_d = torch.full_like(t, 1e9)
        best_t = t.clone()
        hit = torch.zeros_like(t, dtype=torch.bool)
        act = torch.arange(idx.numel())
        a_o, a_d, a_t, a_end, a_rows = ro, rd, t, t_end, rows
        eps = self.hit_eps * a_t / (cam.FOCAL_NORMALISED * res)  # a fraction of a pixel's footprint
        for _ in range(self.max_steps):
            p = a_o + a_t[:, None] * a_d
            sd = head_sdf(p[:, 0], p[:, 1], p[:, 2], a_rows)
            better = sd < best_d[act]
            best_d[act] = torch.where(better, sd, best_d[act])
            best_t[act] = torch.where(better, a_t, best_t[act])
            is_hit = sd < eps
            hit[act] = is_hit
            a_t = a_t + sd.clamp_min(0.0) * 0.9 + 1e-4  # 0.9: the blended SDF is not exactly 1-Lipschitz
            keep = ~is_hit & (a_t < a_end)
            if not bool(keep.any()):
                break
            if not bool(keep.all()):
                act, a_o, a_d, a_t, a_end, eps = act[keep], a_o[keep], a_d[keep], a_t[keep], a_end[keep], eps[keep]
                a_rows = a_rows.take(keep)
        # --- band around the surface (hits) or the closest approach (near misses)
        band_ok = hit | (best_d < 4.0 / s)
        sel = torch.nonzero(band_ok).squeeze(1)
        if sel.numel() == 0:
            return alpha, depth, rgb
        ro, rd, tc, sdc, rows = ro[sel], rd[sel], best_t[sel], best_d[sel], rows.take(sel)
        pc = ro + tc[:, None] * rd
        nrm = self._normal(pc, sdc, rows)
        cos = (nrm * rd).sum(-1).abs().clamp_min(0.25)
        w = 2.5 / (s * cos)
        k = torch.linspace(-1.0, 3.0, self.n_band)  # the band reaches ~7/s inside: opacity ≥ 0.999
        ts = tc[:, None] + w[:, None] * k[None, :]  # [R, S]
        ts = torch.maximum(ts, tin[idx][sel][:, None])
        # facing hits: the SDF is linear across the band (sdf ≈ −cos·(t − t_hit)), so use that;
        # silhouettes and grazing hits: evaluate the SDF at the band samples
        sd = sdc[:, None] - cos[:, None] * (ts - tc[:, None])
        full = torch.nonzero(~hit[sel] | (cos < 0.35)).squeeze(1)
        if full.numel():
            pts = ro[full, None, :] + ts[full, :, None] * rd[full, None, :]
            sd[full] = head_sdf(pts[..., 0], pts[..., 1], pts[..., 2], rows.take(full).unsqueeze())
        sigma = s * torch.sigmoid(-s * sd)
        comp = composite(sigma[None, ..., None], torch.zeros(1, *sigma.shape, 1), ts[None], density_activation="none")
        a = comp["alpha"][0].clamp(0.0, 1.0)
        dep = torch.where(a > 1e-6, comp["depth"][0], t_far[idx][sel])
        # colour on the surface itself: one Newton step (p − sdf·n) makes it independent of where
        # within the tolerance the trace stopped (no texture swimming between views/frames)
        ps = pc - sdc.clamp(-0.02, 0.02)[:, None] * nrm
        col = self._colour(ps, nrm, rows, sample[idx][sel], C)
        out = idx[sel]
        alpha[out], depth[out], rgb[out] = a, dep, col
        return alpha, depth, rgb

    def _normal(self, p, sd0, rows, h: float = 1.5e-3):
        """Forward-difference normal of the SDF (3 evaluations in one batch; ``sd0`` = sdf(p))."""
        q = p[:, None, :] + h * torch.eye(3, dtype=p.dtype)[None]
        sd = head_sdf(q[..., 0], q[..., 1], q[..., 2], rows.unsqueeze())  # [R, 3]
        return torch.nn.functional.normalize(sd - sd0[:, None], dim=-1)

    def _colour(self, p, nrm, rows, sample, C):
        """Albedo from the nearest component × Lambert shading with a head-fixed light."""
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        _, parts = head_sdf(x, y, z, rows, parts=True)

        def near(dist, eps=0.006, soft=0.003):
            return torch.sigmoid((eps - dist) / soft)[:, None]

        tex = C["tex"][sample]
        skin = C["skin"][sample]
        # skin texture: a few oriented sinusoids (pores/blotches) and cheek blush, jaw shadow
        n1 = torch.sin(37.0 * (x * (0.6 + tex[:, 0]) + y * (0.9 - tex[:, 1]) + z * 0.5) + 6.28 * tex[:, 2])
        n2 = torch.sin(53.0 * (x * (0.3 - tex[:, 3]) - y * 0.7 + z * (0.5 + tex[:, 0])) + 6.28 * tex[:, 1])
        n3 = torch.sin(9.0 * (x * (1.0 - tex[:, 2]) + y * tex[:, 3] - z) + 6.28 * tex[:, 0]) * torch.sin(
            11.0 * y + 6.28 * tex[:, 3]
        )
        albedo = skin * (1.0 + 0.012 * (n1 + n2) + 0.035 * n3)[:, None]
        blush = torch.exp(-((parts["ck"] + 0.02).clamp_min(0) ** 2) / 0.002)[:, None] * C["blush"][sample]
        albedo = albedo * (1 - 0.12 * blush) + torch.tensor([0.75, 0.3, 0.3]) * 0.12 * blush
        beard = C["beard"][sample] * ((-0.14 - y) / 0.05).clamp(0, 1)[:, None] * near(parts["jaw"], 0.01, 0.004)
        albedo = albedo * (1 - 0.18 * beard.clamp(0, 1) * (C["beard"][sample] > 0.6))
        # lips, brows
        albedo = torch.lerp(albedo, C["lips"][sample], near(parts["lips"], 0.004, 0.002))
        albedo = torch.lerp(albedo, C["brow"][sample], torch.sigmoid(-parts["brow2d"] / 0.12)[:, None] * 0.92)
        # hair with strands
        strand = torch.sin(70.0 * torch.atan2(x, z + 0.03) + 6.0 * torch.sin(9.0 * y + 6.28 * tex[:, 2]))
        hair = C["hair"][sample] * (0.93 + 0.08 * strand)[:, None]
        albedo = torch.lerp(albedo, hair, near(parts["hair"], 0.004, 0.002))
        # mouth interior and teeth
        albedo = torch.lerp(albedo, torch.tensor([0.22, 0.06, 0.07]), near(parts["cav"].abs(), 0.004, 0.002))
        albedo = torch.lerp(albedo, torch.tensor([0.9, 0.88, 0.8]), near(parts["teeth"], 0.003, 0.0015))
        # eyes: sclera, iris, pupil around the gaze direction; lids cover them
        ex = torch.where(x > 0, x - rows.ey_x, x + rows.ey_x)
        ey_, ez_ = y - rows.ey_y, z - rows.ey_z
        rn = _len3(ex, ey_, ez_).clamp_min(1e-6)
        cosg = (ex * rows.gz_x + ey_ * rows.gz_y + ez_ * rows.gz_z) / rn
        iris = torch.sigmoid((cosg - 0.87) / 0.012)[:, None]
        pupil = torch.sigmoid((cosg - 0.975) / 0.005)[:, None]
        eye = torch.lerp(torch.tensor([0.93, 0.91, 0.88]).expand_as(albedo), C["eye"][sample], iris)
        eye = eye * (
            1 - 0.35 * torch.sigmoid((0.89 - cosg).abs().neg().add(0.02) / 0.005)[:, None] * iris
        )  # limbal ring
        eye = torch.lerp(eye, torch.tensor([0.02, 0.02, 0.02]), pupil)
        on_eye = near(parts["eyes"], 0.002, 0.001) * (parts["eyes"] < parts["lids"] + 0.002)[:, None]
        albedo = torch.lerp(albedo, eye, on_eye)
        # shading (light fixed in the head frame) with a little ambient occlusion from the SDF
        lam = ((nrm @ _LIGHT) + 0.15).clamp_min(0.0) / 1.15
        shade = 0.42 + 0.7 * lam
        return (albedo * shade[:, None]).clamp(0.0, 1.0)
