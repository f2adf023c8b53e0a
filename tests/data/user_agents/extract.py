"""Rebuild browsers.txt and crawlers.txt from the published packages (see README.md).

Usage, from an empty scratch directory::

    pip download --no-deps --no-binary :all: crawlerdetect==0.4.2   # MIT
    pip download --no-deps fake-useragent==2.2.0                    # Apache-2.0
    npm pack woothee@1.11.1                                          # Apache-2.0
    npm pack user-agents@1.0.484 ... user-agents@2.1.198             # BSD-2-Clause
    for f in *.tar.gz *.tgz; do mkdir -p "${f%.t*gz}" && tar xzf "$f" -C "${f%.t*gz}"; done
    unzip -q -d fake-useragent fake_useragent-2.2.0-py3-none-any.whl
    python extract.py . path/to/tests/data/user_agents

Needs PyYAML (for the woothee test sets). Sampling is by SHA-256 of the string, so the same
inputs always give the same files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path

BROWSER_SAMPLE = 2500
CRAWLER_DETECT_SAMPLE = 1921


def _unique(lines: Iterable[str]) -> list[str]:
    cleaned = (line.strip() for line in lines)
    return list(dict.fromkeys(line for line in cleaned if line and "\n" not in line))


def _sample(items: list[str], size: int) -> list[str]:
    ranked = sorted(items, key=lambda ua: hashlib.sha256(ua.encode()).hexdigest())
    return sorted(ranked[:size])


def _browsers(scratch: Path) -> list[str]:
    agents: list[str] = []
    for path in sorted(scratch.glob("user-agents-*/package/src/user-agents.json.gz")):
        agents += [entry["userAgent"] for entry in json.loads(gzip.decompress(path.read_bytes()))]
    for path in sorted(scratch.glob("user-agents-*/package/dist/user-agents.json")):
        agents += [entry["userAgent"] for entry in json.loads(path.read_text())]
    jsonl = scratch / "fake-useragent/fake_useragent/data/browsers.jsonl"
    agents += [json.loads(line)["useragent"] for line in jsonl.read_text().splitlines()]
    return _sample(_unique(agents), BROWSER_SAMPLE)


def _crawlers(scratch: Path) -> list[str]:
    import yaml  # type: ignore[import-untyped]

    fixture = scratch / "crawlerdetect-0.4.2/crawlerdetect-0.4.2/tests/fixtures/user_agent"
    crawler_detect = _unique((fixture / "crawlers.txt").read_text().splitlines())
    woothee: list[str] = []
    for path in sorted(scratch.glob("woothee-1.11.1/package/woothee/testsets/crawler*.yaml")):
        woothee += [
            e["target"] for e in yaml.safe_load(path.read_text()) if e["category"] == "crawler"
        ]
    chosen = _sample([ua for ua in crawler_detect if ua not in set(woothee)], CRAWLER_DETECT_SAMPLE)
    return sorted(_unique(woothee + chosen))


def main(scratch: Path, out: Path) -> None:
    for name, agents in (
        ("browsers.txt", _browsers(scratch)),
        ("crawlers.txt", _crawlers(scratch)),
    ):
        (out / name).write_text("".join(ua + "\n" for ua in agents), encoding="utf-8")
        print(f"{name}: {len(agents)} user agents")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
