"""The Skopos collections, and how to add them to a PocketBase without harm.

``collections.json`` (shipped in the package) describes what the SDK
reads and writes, in the Skopos Dashboard's export format: relations name their
target collection (``relationTo``). ``plan_schema`` compares it with what a
server already has and returns only additions: new collections, missing fields,
missing indexes. It never removes or alters a collection, field, index or API
rule, so the dashboard's own collections and fields a user added survive.
"""

from __future__ import annotations

import copy
import json
import re
import zlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = ["SchemaPlan", "load_schema", "plan_schema"]

Collection = dict[str, Any]

# Created only when missing: PocketBase ships its own ``users`` collection.
_CREATE_ONLY = frozenset({"users"})
_INDEX_NAME = re.compile(r"INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)
_INDEX_SHAPE = re.compile(
    r"CREATE\s+(UNIQUE\s+)?INDEX\s+.*?\sON\s+`?(\w+)`?\s*\((.*?)\)\s*(WHERE.*)?$",
    re.IGNORECASE | re.DOTALL,
)


def load_schema() -> list[Collection]:
    """The collections Skopos needs, as shipped in the package."""
    text = resources.files("skopos._admin").joinpath("collections.json").read_text("utf-8")
    collections: list[Collection] = json.loads(text)["collections"]
    return collections


def collection_id(name: str) -> str:
    """The id given to a collection Skopos creates (PocketBase's own convention)."""
    return f"pbc_{zlib.crc32(name.encode())}"


@dataclass
class SchemaPlan:
    """What ``skopos setup`` will import, and why.

    ``collections`` are complete definitions, ready for
    ``PUT /api/collections/import``; ``conflicts`` are problems that stop setup
    (e.g. a field Skopos writes exists with another type).
    """

    collections: list[Collection] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        """Whether anything needs importing."""
        return bool(self.collections)


def plan_schema(desired: list[Collection], existing: list[Collection]) -> SchemaPlan:
    """Compute the additions that bring ``existing`` up to ``desired``.

    >>> plan = plan_schema(load_schema(), existing=[])
    >>> sorted(plan.created)[:2]
    ['events', 'js_errors']
    """
    plan = SchemaPlan()
    by_name = {c["name"]: c for c in existing}
    ids = {name: c["id"] for name, c in by_name.items()}
    for wanted in desired:
        ids.setdefault(wanted["name"], collection_id(wanted["name"]))

    for wanted in desired:
        name = wanted["name"]
        current = by_name.get(name)
        if current is None:
            plan.collections.append(_new_collection(wanted, ids))
            plan.created.append(name)
            continue
        if name in _CREATE_ONLY:
            continue
        if current.get("type") != wanted["type"]:
            plan.conflicts.append(
                f"collection {name!r} is a {current.get('type')} collection;"
                f" Skopos needs a {wanted['type']} collection"
            )
            continue
        merged, additions = _merge_collection(current, wanted, ids, plan.conflicts)
        if additions:
            plan.collections.append(merged)
            plan.added[name] = additions
    return plan


def _resolve_relation(spec: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    target = spec.pop("relationTo", None)
    if spec.get("type") == "relation" and target is not None:
        spec["collectionId"] = ids[target]
    return spec


def _new_collection(wanted: Collection, ids: dict[str, str]) -> Collection:
    collection = copy.deepcopy(wanted)
    collection["id"] = ids[wanted["name"]]
    collection["fields"] = [_resolve_relation(f, ids) for f in wanted["fields"]]
    return collection


def _merge_collection(
    current: Collection, wanted: Collection, ids: dict[str, str], conflicts: list[str]
) -> tuple[Collection, list[str]]:
    merged = copy.deepcopy(current)
    name = wanted["name"]
    fields_by_name = {f["name"]: f for f in merged.get("fields", [])}
    additions: list[str] = []
    for spec in wanted["fields"]:
        have = fields_by_name.get(spec["name"])
        if have is None:
            merged["fields"].append(_resolve_relation(spec, ids))
            additions.append(f"field {spec['name']} ({spec['type']})")
            continue
        if have.get("type") != spec["type"]:
            conflicts.append(
                f"{name}.{spec['name']} is a {have.get('type')} field;"
                f" Skopos writes it as {spec['type']}"
            )
        elif spec["type"] == "relation" and have.get("collectionId") != ids[spec["relationTo"]]:
            conflicts.append(
                f"{name}.{spec['name']} points to another collection than {spec['relationTo']!r}"
            )
    indexes = list(merged.get("indexes") or [])
    for index in wanted.get("indexes", []):
        if not any(_same_index(index, other) for other in indexes):
            indexes.append(index)
            additions.append(f"index {_index_name(index)}")
    merged["indexes"] = indexes
    return merged, additions


def _index_name(sql: str) -> str:
    match = _INDEX_NAME.search(sql)
    return match.group(1) if match else sql


def _index_shape(sql: str) -> tuple[bool, str, tuple[str, ...], str] | None:
    match = _INDEX_SHAPE.search(" ".join(sql.split()))
    if match is None:
        return None
    columns = tuple(sorted(c.strip(" `").lower() for c in match.group(3).split(",")))
    return bool(match.group(1)), match.group(2).lower(), columns, (match.group(4) or "").lower()


def _same_index(a: str, b: str) -> bool:
    """Same name, or same table, columns, uniqueness and condition."""
    if _index_name(a) == _index_name(b):
        return True
    shape = _index_shape(a)
    return shape is not None and shape == _index_shape(b)
