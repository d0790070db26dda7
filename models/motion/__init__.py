"""Motion encoders E_mot (DESIGN.md §1): the interface, the synthetic analyser, PD-FGC."""

from models.motion.base import (
    BACKENDS,
    MotionEncoder,
    build_motion_encoder,
    freeze,
    load_motion_encoder,
    save_motion_encoder,
)

__all__ = ["BACKENDS", "MotionEncoder", "build_motion_encoder", "freeze", "load_motion_encoder", "save_motion_encoder"]
