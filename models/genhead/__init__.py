"""Synthetic-world head generators (torch only): the procedural GenHead and its parameters."""

from models.genhead.params import EXPRESSION_NAMES, SHAPE_NAMES, parameter_names, sample_params
from models.genhead.procedural import HeadRender, ProceduralGenHead

__all__ = ["ProceduralGenHead", "HeadRender", "sample_params", "parameter_names", "SHAPE_NAMES", "EXPRESSION_NAMES"]
