"""The base of every job's settings model: pydantic, strict about unknown keys, validated on
assignment, finite (no NaN or infinity in any number). A recipe embeds the same model the CLI and
the API build, so a setting has one declaration (its default, bounds and description) and one error
wording, which names the field both as a recipe key and as a CLI flag."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from hoe.errors import HoEError

SettingsT = TypeVar("SettingsT", bound="Settings")

# A name in a recipe or a bundle (expert, merge, router) becomes a file or folder name: it is an
# identifier, never a path (no separator, no leading dot, not empty), so nothing it names can land
# outside its bundle.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
Identifier = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

# Model dtypes by name, and the short names people also write. Checked here without importing torch
# (settings are built before any weights load); hoe.checkpoints.loading maps them to torch dtypes.
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64", "half": "float16"}


def canonical_dtype(name: str) -> str:
    """'bf16' → 'bfloat16'; an unknown name is one line listing the known ones."""
    key = DTYPE_ALIASES.get(name, name)
    if key not in DTYPE_NAMES:
        raise HoEError(f"unknown dtype '{name}' (choose from {', '.join(DTYPE_NAMES)})")
    return key


def _dtype_name(value: str) -> str:
    try:
        canonical_dtype(value)
    except HoEError as exc:
        raise ValueError(str(exc)) from None
    return value


# A settings field naming a dtype ('float32', 'bf16', ...), checked when the settings are made.
DtypeName = Annotated[str, AfterValidator(_dtype_name)]


class Settings(BaseModel):
    """Settings of one job; ``create`` turns a validation error into one ``HoEError`` line."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @classmethod
    def create(cls: type[SettingsT], **values: Any) -> SettingsT:
        try:
            return cls(**values)
        except ValidationError as exc:
            raise HoEError(f"{cls.job_name()} settings: {describe(exc)}") from None

    @classmethod
    def job_name(cls) -> str:
        """'make-expert' for MakeExpertSettings, 'sft' for SFTSettings, 'decoding' for Decoding."""
        words = re.sub(r"(?<=[a-z])(?=[A-Z])", "-", cls.__name__.removesuffix("Settings"))
        return words.lower() or "job"


def flag_name(field: str) -> str:
    """A setting as both a recipe user and a CLI user know it: ``prompt_count (--prompt-count)``."""
    return f"{field} (--{field.replace('_', '-')})"


def describe(exc: ValidationError) -> str:
    """pydantic's first error in words for a recipe user and a CLI user alike:
    ``prompt_count (--prompt-count): input should be greater than 0, got 0``."""
    error = exc.errors()[0]
    location = [str(part) for part in error["loc"]]
    message = error["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if not location:
        return message
    field = flag_name(location[0]) + "".join(f"[{part}]" for part in location[1:])  # weights (--weights)[0]
    shows_input = error["type"] not in ("missing", "extra_forbidden") and "input" in error
    return f"{field}: {message}" + (f", got {error['input']!r}" if shows_input else "")


def first_error(exc: ValidationError) -> str:
    """pydantic's first error as 'field.path: message' (files: a recipe, a bundle's hoe.json)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{where}: {error['msg']}"
