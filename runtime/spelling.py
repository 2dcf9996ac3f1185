"""How error messages name an option: as a Python keyword (`top_p=`) or as a command-line flag (`--top-p`).

Validation code that needs no model (sampling parameters, engine sizes, the device) is shared by the library
API, the CLI and the server; each caller passes the spelling its user reads, so a CLI user is told about
`--top-k 0`, never about `top_k=None`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from janus_rt.errors import InputError

Built = TypeVar("Built")


@dataclass(frozen=True)
class Spelling:
    """Names of options and of their "off" values in one user-facing vocabulary."""

    flags: bool = False  # True: `--top-k`; False: `top_k`
    off_values: Mapping[str, str] = field(default_factory=dict)  # option -> how to say "off" (default "None")
    renamed: Mapping[str, str] = field(default_factory=dict)  # library option -> the user's name (HTTP: `n`)

    def name(self, option: str) -> str:
        """The option as the user writes it: `top_k`, `--top-k`, or its renamed field (`max_tokens`)."""
        option = self.renamed.get(option, option)
        return "--" + option.replace("_", "-") if self.flags else option

    def setting(self, option: str, value: object) -> str:
        """The option set to a value: `device='cpu'` or `--device cpu`."""
        return f"{self.name(option)} {value}" if self.flags else f"{option}={value!r}"

    def off(self, option: str) -> str:
        """How to turn the option off (or leave it unset): `None`, `0 (off)`, `omitted` ..."""
        return self.off_values.get(option, "None")


API = Spelling()
CLI = Spelling(flags=True, off_values=MappingProxyType({
    "top_k": "0 (off)",
    "top_p": "left out (off)",
    "seed": "left out (a random seed)",
    "max_rows": "left out (sized from memory)",
    "max_seq_len": "left out (the model's context, at most 2048)",
}))


def build_in_words(cls: Callable[..., Built], fields: Mapping[str, Any], spelling: Spelling,
                   check: Callable[[Mapping[str, Any], Spelling], None]) -> Built:
    """`cls(**fields)` for a dataclass that validates itself once, when built (in the API's words); when it refuses
    and `spelling` is another vocabulary, `check` runs again over the fields (defaults filled in) to raise the same
    refusal in the user's words (`--top-k`, not `top_k`)."""
    try:
        return cls(**fields)
    except InputError:
        if spelling is API:
            raise
        defaults = {name: f.default for name, f in cls.__dataclass_fields__.items()}  # type: ignore[attr-defined]
        check({**defaults, **fields}, spelling)
        raise
