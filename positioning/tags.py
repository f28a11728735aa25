"""Which tag an advertisement belongs to: the one place tags are resolved, for every source.

Identity comes from the beacon frame (phones rotate addresses), else from an address the store
registered for a tag without a frame (`mac:<ADDR>`). Frames repeat, so `positioning.frames`
caches their decoding by payload, in bounded caches: a flood of random payloads cannot grow
memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .frames import tag_id, tag_id_from_json


class TagResolver:
    def __init__(self, registered_addresses: Iterable[str] = ()) -> None:
        self.registered: dict[str, str] = {
            a.upper(): f"mac:{a.upper()}" for a in registered_addresses
        }

    def resolve(
        self, mfg: Mapping[int, bytes], svc: Mapping[str, bytes], address: str
    ) -> str | None:
        """The tag of a radio's advertisement (raw bytes), or None: not a tag."""
        tag = tag_id(mfg, svc)
        if tag is None and self.registered:
            return self.registered.get(address.upper())
        return tag

    def resolve_json(self, mfg: object, svc: object, address: object) -> str | None:
        """The same for a trace line's hex-encoded `mfg` / `svc` objects (untrusted JSON)."""
        tag = tag_id_from_json(mfg, svc)
        if tag is None and self.registered and isinstance(address, str):
            return self.registered.get(address.upper())
        return tag
