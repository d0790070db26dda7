"""Networks of the method (torch only): cameras, rendering, Ψ/Ψ3d, GenHead, motion encoders, losses.

The torchvision compatibility shim runs first, before any submodule imports timm or lpips.
"""

from models import torchvision_compat as _torchvision_compat

_torchvision_compat.install()
