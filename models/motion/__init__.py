"""Motion encoders E_mot (DESIGN.md §1): the interface, the synthetic analyser, PD-FGC."""

from models.motion.base import MotionEncoder, freeze
from models.motion.files import BACKENDS, build_motion_encoder, load_motion_encoder, save_motion_encoder

__all__ = ["BACKENDS", "MotionEncoder", "build_motion_encoder", "freeze", "load_motion_encoder", "save_motion_encoder"]
