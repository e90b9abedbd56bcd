"""The sections of `brev --help`, in the order NVIDIA Brev's CLI uses: what you run, how you
get in, who you share with, setup. Each command names its panel from here."""

from __future__ import annotations

INSTANCES = "Instances"
ACCESS = "Access"
ORGANIZATION = "Organization"
CONFIGURATION = "Configuration"
CONTROL_PLANE = "Control plane"
OTHER = "Other"

ORDER = [INSTANCES, ACCESS, ORGANIZATION, CONFIGURATION, CONTROL_PLANE, OTHER]
