"""Providers by name, from the `brev.providers` entry-point group (so plug-ins can add one)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from brev.providers.base import Provider, ProviderFactory


@functools.cache
def _factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="brev.providers")}


def provider_names() -> list[str]:
    return sorted(_factories())


def make_provider(name: str, config: Mapping[str, Any]) -> Provider:
    """KeyError when no provider of that name is installed."""
    factory: ProviderFactory = _factories()[name].load()
    return factory(config)
