"""Lazy adaptors for the cloud SDKs: one per SDK, imported on first use, never at start-up.

The SDKs are extras (`pip install 'brev[aws]'`), so a plane may lack one. Asking an adaptor for
a module of a missing SDK raises `SdkMissing`, a typed provider error whose message says what
to install: the API answers it as a 4xx, the reconciler fails the instance with it, and no
ImportError reaches a traceback. `brev --help` pays nothing: nothing here imports an SDK until
a provider method asks.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from brev.providers.base import SdkMissing


@dataclass(frozen=True)
class Sdk:
    display_name: str  # as the message names it: "AWS support is not installed ..."
    extra: str  # the brev extra that installs it
    probe: str  # a module that is there exactly when the SDK is installed

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.probe) is not None
        except ModuleNotFoundError:  # a missing parent package ("google" for google.cloud...)
            return False

    def require(self) -> None:
        """SdkMissing unless the SDK can be imported."""
        if not self.installed():
            raise SdkMissing(self.display_name, self.extra)

    def load(self, module: str) -> ModuleType:
        """`module` of this SDK (already imported after the first call: a dict lookup)."""
        try:
            return importlib.import_module(module)
        except ImportError:
            raise SdkMissing(self.display_name, self.extra) from None


AWS = Sdk("AWS", "aws", "boto3")
GCP = Sdk("GCP", "gcp", "google.cloud.compute_v1")
