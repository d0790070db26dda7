"""One command-line grammar for every flow: ``--preset NAME`` and ``--set section.field=value``, once per override.

    python -m flows.pipeline --preset tiny --set psi.steps=10 --set psi3d.steps=20

:func:`flow_parser` makes the parser; each flow adds its own typed options (``--videos``, ``--model``, ...).
``args.overrides`` is the list of ``key=value`` strings that ``pipeline_tasks.config.load_config`` takes, in
the order given (a later ``--set`` of the same key wins). One ``--set`` carries exactly one override, so its
value may hold spaces (a path: ``--set "pseudo_mv.videos=my clips/*.mp4"``); several overrides in one ``--set``
are refused. ``make`` splits ``SET='a.b=1 c.d=2'`` into words (shell quoting, never evaluated) and passes one
``--set`` per word (``WITH_SET`` in the Makefile).
"""

from __future__ import annotations

import argparse
import re

from pydantic import BaseModel

from pipeline_tasks.config import PipelineConfig

# fields of the top level that are not sections and that --set may name without a dot (`preset` is --preset)
TOP_LEVEL_KEYS = tuple(
    name
    for name, field in PipelineConfig.model_fields.items()
    if name != "preset" and not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))
)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
_KEY = re.compile(rf"(?:{_DOTTED}|{'|'.join(map(re.escape, TOP_LEVEL_KEYS)) or '(?!)'})")
_ANOTHER = re.compile(rf"\s(?:{_KEY.pattern})=")  # " c.d=" inside a value: a second override


def override(text: str) -> str:
    """``--set``'s type: one ``section.field=value`` item, returned as given; anything else is an argparse error."""
    example = "--set psi.steps=10 --set psi3d.steps=20"
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} has no '=': expected section.field=value, e.g. {example}")
    key, value = text.split("=", 1)
    if not _KEY.fullmatch(key):
        top = ", ".join(TOP_LEVEL_KEYS)
        raise argparse.ArgumentTypeError(
            f"{text!r}: key {key!r} is not a dotted section.field (or one of the top-level fields: {top})"
        )
    if _ANOTHER.search(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} holds several overrides: repeat --set once per override, e.g. {example}"
        )
    return text


def flow_parser(doc: str | None, preset_default: str = "tiny") -> argparse.ArgumentParser:
    """A parser with ``--preset`` and the repeatable ``--set`` (dest ``overrides``, a list); the description is
    the first paragraph of ``doc`` (a flow's module docstring: its first sentence, wrapped or not)."""
    ap = argparse.ArgumentParser(description=" ".join(doc.strip().split("\n\n")[0].split()) if doc else None)
    ap.add_argument("--preset", default=preset_default, help=f"configs/<preset>.yaml (default {preset_default})")
    ap.add_argument(
        "--set",
        dest="overrides",
        metavar="SECTION.FIELD=VALUE",
        type=override,
        action="append",
        default=[],
        help="override one config field; repeat --set once per override (e.g. --set psi.steps=10 --set psi3d.steps=20)",
    )
    return ap
