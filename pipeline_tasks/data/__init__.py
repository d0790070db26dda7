"""Data the stages share: image conversions, readers of other stages' files, the GenHead renderer."""
