"""registry/plugins.json lists exactly the components that installed larpo distributions provide."""

from __future__ import annotations

import json
from pathlib import Path

from larpo.plugins import get_host

CATALOGUE = Path(__file__).resolve().parents[1] / "registry" / "plugins.json"
REQUIRED = {"name", "kind", "distribution", "entry_point", "summary", "docs"}


def load_catalogue() -> list[dict]:
    return json.loads(CATALOGUE.read_text(encoding="utf-8"))["plugins"]


def installed_components() -> dict[tuple[str, str], dict]:
    host = get_host()
    found = {}
    for kind, registry in host.registries.items():
        for entry in registry:
            record = host.records[entry.plugin]
            found[(kind, entry.name)] = {
                "distribution": entry.distribution,
                "entry_point": f"{record.name} = {record.entry_point}",
                "summary": entry.summary,
            }
    return found


def test_catalogue_entries_have_required_fields():
    for item in load_catalogue():
        assert REQUIRED <= set(item), item
        assert item["kind"] in get_host().registries


def test_catalogue_matches_installed_components():
    installed = installed_components()
    catalogue = {(item["kind"], item["name"]): item for item in load_catalogue()}
    for key, found in installed.items():
        assert key in catalogue, f"{key} is installed but missing from registry/plugins.json"
        for field in ("distribution", "entry_point", "summary"):
            assert catalogue[key][field] == found[field], (key, field)
    installed_distributions = {found["distribution"] for found in installed.values()}
    for key, item in catalogue.items():
        if item["distribution"] in installed_distributions:
            assert key in installed, f"{key} is catalogued for an installed distribution but not registered"


def test_catalogue_docs_links_exist():
    root = CATALOGUE.parents[1]
    for item in load_catalogue():
        link = item["docs"].split("#")[0]
        if not link.startswith("http"):
            assert (root / link).is_file(), item["docs"]
