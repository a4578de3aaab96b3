"""The survey countries (countries.yaml): task-name slug, persona name, WVS file, Hofstede code, culture."""

from __future__ import annotations

from pathlib import Path

import yaml

from culture_tasks.metadata import with_hints

COUNTRIES_FILE = Path(__file__).resolve().parent / "countries.yaml"


KEYS = ("slug", "name", "wvs_csv", "hofstede", "culture")

# Hofstede's own country codes differ from ISO 3166 alpha-3 for these countries; regions
# (Arab countries, Africa East, ...) have no ISO code. A file code always wins over an ISO code.
HOFSTEDE_TO_ISO3 = {
    "ALG": "DZA", "AUL": "AUS", "BAN": "BGD", "BOS": "BIH", "BUL": "BGR", "BUF": "BFA", "CHI": "CHN",
    "COS": "CRI", "CRO": "HRV", "DEN": "DNK", "ECA": "ECU", "SAL": "SLV", "GRE": "GRC", "GUA": "GTM",
    "HOK": "HKG", "ICE": "ISL", "IDO": "IDN", "IRA": "IRN", "IRE": "IRL", "KYR": "KGZ", "LAT": "LVA",
    "LIT": "LTU", "MAC": "MKD", "MAL": "MYS", "MOL": "MDA", "MNG": "MNE", "MOR": "MAR", "NET": "NLD",
    "NIG": "NGA", "PHI": "PHL", "POR": "PRT", "PUE": "PRI", "ROM": "ROU", "SER": "SRB", "SIN": "SGP",
    "SLK": "SVK", "SLV": "SVN", "SAF": "ZAF", "SPA": "ESP", "SWI": "CHE", "TAI": "TWN", "TAN": "TZA",
    "TRI": "TTO", "URU": "URY", "VIE": "VNM", "ZAM": "ZMB", "ZIM": "ZWE", "GER": "DEU",
}


def listed_countries(path: Path = COUNTRIES_FILE) -> list[dict]:
    """The file's countries; an unknown key (a misspelt ``hofstede`` would drop the country's VSM13
    tasks without a word), a missing slug or name, or a slug given twice is an error."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["countries"]
    slugs: set[str] = set()
    for i, entry in enumerate(entries, 1):
        where = f"{path}: country #{i} ({entry.get('slug', '?')})"
        unknown = [k for k in entry if k not in KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {with_hints(unknown, KEYS)}; the keys are {', '.join(KEYS)}")
        missing = [k for k in ("slug", "name") if not entry.get(k)]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        if entry["slug"] in slugs:
            raise ValueError(f"{where}: slug {entry['slug']} is given twice")
        slugs.add(entry["slug"])
    return entries


def culture_key(culture: str) -> str:
    """The culture a name stands for, as this file spells it: rows naming "English" and "english" are of one
    culture, which a run records and compares under one name."""
    return str(culture).strip().lower()


def culture_countries(path: Path = COUNTRIES_FILE) -> dict[str, tuple[str, ...]]:
    """Culture -> the slugs of the countries that stand for it, both in the file's order."""
    out: dict[str, list[str]] = {}
    for country in listed_countries(path):
        if country.get("culture"):
            out.setdefault(culture_key(country["culture"]), []).append(country["slug"])
    return {culture: tuple(slugs) for culture, slugs in out.items()}


def _spellings(entry: dict) -> set[str]:
    """Every way a listed country may be named, casefolded, with "_" read as a space."""
    name = str(entry["name"]).casefold()
    code = str(entry.get("hofstede") or "")
    names = {str(entry["slug"]).casefold().replace("_", " "), name, name.removeprefix("the ")}
    if code:
        names |= {code.casefold(), HOFSTEDE_TO_ISO3.get(code, code).casefold()}
    return names


def find_listed(key: str, path: Path = COUNTRIES_FILE) -> dict | None:
    """The entry a name stands for: slug, persona name with or without "the", Hofstede code or ISO alpha-3
    code, in any case ("South Korea", "south_korea", "KOR"; "the United States", "United States", "USA").
    The one place culture-steer's --target and culture-align's --country look a listed country up, so that
    both take the same spellings; None when no entry matches."""
    wanted = str(key).strip().casefold().replace("_", " ")
    return next((entry for entry in listed_countries(path) if wanted in _spellings(entry)), None)
