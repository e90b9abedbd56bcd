"""Names for instances nobody named: `a100-brisk-otter`, readable and easy to type."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "brisk", "calm", "bold", "bright", "clever", "eager", "fair", "gentle", "happy", "keen",
    "lively", "lucky", "merry", "nimble", "proud", "quick", "quiet", "rapid", "sharp", "shy",
    "steady", "swift", "tidy", "vivid", "warm", "wise", "witty", "zesty", "amber", "azure",
)  # fmt: skip
ANIMALS = (
    "otter", "falcon", "lynx", "heron", "panda", "badger", "beaver", "bison", "crane", "dingo",
    "eagle", "ferret", "gecko", "ibis", "jaguar", "koala", "lemur", "marten", "newt", "ocelot",
    "puffin", "quokka", "raven", "seal", "tapir", "urchin", "vole", "walrus", "yak", "zebra",
)  # fmt: skip


def generate_name(prefix: str, taken: set[str]) -> str:
    """`prefix-adjective-animal`, avoiding `taken`; a short suffix if every pair is taken."""
    prefix = prefix.lower()
    for _ in range(50):
        name = f"{prefix}-{secrets.choice(ADJECTIVES)}-{secrets.choice(ANIMALS)}"
        if name not in taken:
            return name
    return f"{prefix}-{secrets.choice(ADJECTIVES)}-{secrets.token_hex(3)}"
