"""Providers by name, from the `brev.providers` entry-point group: built-in and plug-in alike.

A provider class declares what brev needs to know about it, read here and nowhere else:

    name          the entry point's name (`brev provider add NAME`)
    display_name  how messages and the dashboard name it ("Lambda Cloud")
    config_keys   its config (`ConfigKey`): what `brev provider add` collects and the plane checks
    sdk           optional `brev.providers.sdks.Sdk`: a missing SDK is told before any call
    offers_file   optional: a CSV of its offers in the catalog's format (a plug-in's catalog)
    discover      optional classmethod(values) -> values: the CLI's credential discovery (AWS
                  profiles), run where the CLI has the provider installed

Loading an entry point imports the provider's module, never its SDK (that waits for a call).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from brev.providers.base import ConfigKey, Provider
from brev.providers.sdks import Sdk

GROUP = "brev.providers"


class UnknownProvider(KeyError):
    """No installed provider has that name; `known` lists those that are."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown provider '{self.name}'; known: {', '.join(self.known) or 'none'}"


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    display_name: str
    config_keys: tuple[ConfigKey, ...]
    factory: Callable[[Mapping[str, Any]], Provider]
    sdk: Sdk | None = None
    offers_file: Path | None = None
    discover: Callable[[dict[str, str]], dict[str, str]] | None = None

    @property
    def installed(self) -> bool:
        """Whether its SDK (if it needs one) can be imported here."""
        return self.sdk is None or self.sdk.installed()

    def sent_keys(self) -> tuple[ConfigKey, ...]:
        """The keys stored on the plane (not those only the CLI's discovery reads)."""
        return tuple(key for key in self.config_keys if not key.local)


@functools.cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def provider_names() -> list[str]:
    return sorted(_entry_points())


@functools.cache
def info(name: str) -> ProviderInfo:
    """UnknownProvider when nothing of that name is installed."""
    point = _entry_points().get(name)
    if point is None:
        raise UnknownProvider(name, provider_names())
    cls = point.load()
    return ProviderInfo(
        name=name,
        display_name=getattr(cls, "display_name", name),
        config_keys=tuple(getattr(cls, "config_keys", ())),
        factory=cls,
        sdk=getattr(cls, "sdk", None),
        offers_file=getattr(cls, "offers_file", None),
        discover=getattr(cls, "discover", None),
    )


def all_providers() -> list[ProviderInfo]:
    return [info(name) for name in provider_names()]


def make_provider(name: str, config: Mapping[str, Any]) -> Provider:
    """The provider for an org's `config`; UnknownProvider, or SdkMissing (a ProviderError)
    when its SDK is not installed here."""
    found = info(name)
    if found.sdk is not None:
        found.sdk.require()
    return found.factory(config)
