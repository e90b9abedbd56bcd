"""GPU specs as people type them (`a100`, `H100:8`, `a100-80gb`, `any`, `cpu`), checked
against the models and counts the shipped catalog actually offers.

A model's family is the part of its name before the first '-': `a100` means every A100
(A100 and A100-80GB), `a100-80gb` that model only. Names are case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from brev.catalog.offers import Catalog

ANY = "ANY"
CPU = "CPU"
MAX_SUGGESTIONS = 3
# difflib's own default: below this, a "suggestion" is noise.
SUGGESTION_CUTOFF = 0.6
# How many names an unknown GPU with no close match lists, so the message stays one line.
KNOWN_NAMES_SHOWN = 8
# O/0 and I/1 look alike (and 0 sits above O on a keyboard): comparing names with them folded
# puts A100 first for 'a10O'.
_LOOKALIKES = str.maketrans({"O": "0", "I": "1"})
_COUNT = re.compile(r"[0-9]+")


class GpuSpecError(ValueError):
    """A GPU spec that cannot be met; the message is meant for the person who typed it."""


class UnknownGpu(GpuSpecError):
    def __init__(self, name: str, suggestions: list[str], known: list[str]) -> None:
        if suggestions:
            hint = f"did you mean {_either(suggestions)}?"
        else:
            shown = ", ".join(known[:KNOWN_NAMES_SHOWN])
            more = len(known) - KNOWN_NAMES_SHOWN
            hint = f"known GPUs: {shown}" + (f" and {more} more" if more > 0 else "")
        super().__init__(f"unknown GPU '{name}'; {hint}")
        self.name = name
        self.suggestions = suggestions


class ImpossibleCount(GpuSpecError):
    def __init__(self, label: str, count: int, available: list[float]) -> None:
        what = f"{count} \N{MULTIPLICATION SIGN} {label}" if label != ANY else f"{count} GPUs"
        counts = ", ".join(f"{c:g}" for c in available)
        super().__init__(f"no offer has {what}; available: {counts}")
        self.count = count
        self.available = available


@dataclass(frozen=True)
class GpuSpec:
    """What a person asked for. `models` None: any GPU model; `count` None: any count."""

    label: str  # canonical, for messages: 'A100', 'A100-80GB', 'ANY' or 'CPU'
    models: frozenset[str] | None = None
    count: int | None = None
    cpu_only: bool = False

    def matches(self, gpu_model: str | None, gpu_count: float) -> bool:
        if self.cpu_only:
            return gpu_model is None
        if gpu_model is None:
            return False
        if self.models is not None and gpu_model not in self.models:
            return False
        return self.count is None or gpu_count == self.count

    def __str__(self) -> str:
        label = self.label.lower() if self.label in (ANY, CPU) else self.label
        return label if self.count is None else f"{label}:{self.count}"


ANY_GPU = GpuSpec(label=ANY)
CPU_ONLY = GpuSpec(label=CPU, cpu_only=True)


def gpu_family(model: str) -> str:
    return model.split("-", 1)[0]


def parse_gpu_spec(text: str | None, catalog: Catalog | None = None) -> GpuSpec:
    """`a100`, `A100:8`, `a100-80gb`, `l4`, `any`, `any:8`, `cpu`; None or blank: any GPU.

    Raises GpuSpecError (UnknownGpu, ImpossibleCount) for a spec no offer of the catalog meets.
    """
    if text is None or not text.strip():
        return ANY_GPU
    name, has_count, count_text = text.strip().partition(":")
    name = name.strip()
    if not name:
        raise GpuSpecError(f"no GPU name in '{text}': use e.g. a100, a100:8 or any:8")
    count = _parse_count(text, count_text) if has_count else None
    wanted = name.upper()
    if wanted == CPU:
        if count is not None:
            raise GpuSpecError(f"'{text}': cpu takes no count (it means an instance without GPUs)")
        return CPU_ONLY

    if catalog is None:
        # Imported here: offers.py imports this module, and the catalog loads only when needed.
        from brev.catalog.offers import load_catalog

        catalog = load_catalog()
    counts = catalog.counts_by_model
    if wanted == ANY:
        label, models = ANY, None
    else:
        label, models = wanted, _models_named(name, counts)
    if count is not None:
        offered = {c for model in (models or counts) for c in counts[model]}
        if count not in offered:
            raise ImpossibleCount(label, count, sorted(offered))
    return GpuSpec(label=label, models=models, count=count)


def _parse_count(text: str, count_text: str) -> int:
    count_text = count_text.strip()
    if not _COUNT.fullmatch(count_text) or int(count_text) == 0:
        raise GpuSpecError(
            f"invalid GPU count '{count_text}' in '{text}': use a positive whole number, "
            "as in a100:8"
        )
    return int(count_text)


def _models_named(name: str, counts: Mapping[str, frozenset[float]]) -> frozenset[str]:
    """The models a name means: a whole family, or one model; UnknownGpu otherwise."""
    wanted = name.upper()
    family = frozenset(model for model in counts if gpu_family(model) == wanted)
    if family:
        return family
    if wanted in counts:
        return frozenset({wanted})
    known = sorted({*counts, *(gpu_family(model) for model in counts)})
    raise UnknownGpu(name, _close_names(wanted, known), sorted({gpu_family(m) for m in counts}))


def _close_names(wanted: str, known: Iterable[str]) -> list[str]:
    # Imported here: only a mistyped name pays for difflib (about a millisecond).
    from difflib import SequenceMatcher

    folded = wanted.translate(_LOOKALIKES)
    scored = []
    for name in known:
        ratio = SequenceMatcher(None, folded, name.translate(_LOOKALIKES)).ratio()
        if ratio >= SUGGESTION_CUTOFF:
            scored.append((-ratio, name))
    return [name for _, name in sorted(scored)[:MAX_SUGGESTIONS]]


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# Words drivers put before the model that no catalog uses.
_VENDOR_WORDS = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO"}


def model_of_device(device_name: str, known: Iterable[str]) -> str:
    """The catalog's name for a GPU as its driver names it, so that a registered node's GPUs
    and the clouds' answer the same spec: 'NVIDIA A100-SXM4-80GB' -> 'A100-80GB',
    'NVIDIA H200' -> 'H200', 'NVIDIA RTX A6000' -> 'A6000'; a model no cloud sells keeps its
    own name ('NVIDIA GB10' -> 'GB10')."""
    models = {m.upper() for m in known}
    words = [w for w in re.split(r"[\s-]+", device_name.upper()) if w and w not in _VENDOR_WORDS]
    if not words:
        return device_name.strip() or "GPU"
    if words[0] == "RTX" and len(words) > 1:
        for candidate in (words[1], f"RTX{words[1]}"):
            if candidate in models:
                return candidate
        return f"RTX-{words[1]}"
    family = words[0]
    for word in words[1:]:
        if f"{family}-{word}" in models:  # a memory variant: A100-80GB, V100-32GB
            return f"{family}-{word}"
    return family
