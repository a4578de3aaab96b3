"""Which survey countries stand for which culture, as in the CultureLLM paper (Table 1).

The mapping lives in ``culture_tasks/survey/countries.yaml`` (a ``culture:`` per country).
"""

from __future__ import annotations

from dataclasses import dataclass

from culture_tasks.survey.countries import COUNTRIES_FILE, culture_countries, culture_key, listed_countries

# culture -> its countries' slugs, from countries.yaml (each country's `culture:`)
CULTURE_COUNTRIES: dict[str, tuple[str, ...]] = culture_countries()
ONE = "one"  # CultureLLM-One: every culture, each example tagged with its country


@dataclass(frozen=True)
class Country:
    slug: str  # as in the task names wvs_<slug>
    name: str  # as shown in the persona line
    wvs_csv: str  # under culturellm/ in the data root
    culture: str


def _listed() -> dict[str, dict]:
    return {c["slug"]: c for c in listed_countries()}


def countries_of(culture: str) -> list[Country]:
    """The survey countries of a culture (or of all cultures for ``one``)."""
    key = culture_key(culture)
    if key == ONE:
        return [c for name in CULTURE_COUNTRIES for c in countries_of(name)]
    if key not in CULTURE_COUNTRIES:
        raise ValueError(f"unknown culture {culture!r}; choose one of {sorted(CULTURE_COUNTRIES)} or {ONE!r}")
    listed = _listed()
    out = []
    for slug in CULTURE_COUNTRIES[key]:
        entry = listed[slug]
        if not entry.get("wvs_csv"):
            raise ValueError(f"{COUNTRIES_FILE}: country {slug!r} has no wvs_csv; it cannot label {key} examples")
        out.append(Country(slug, entry["name"], entry["wvs_csv"], key))
    return out


def evaluation_tasks(culture: str, persona: bool | None = None) -> list[str]:
    """The lm-eval tasks that score a culture's model: its CultureLLM group and its countries' WVS,
    with the persona line when the model was trained with it (``persona``; default: only ``one``,
    whose prompts name the country)."""
    key = culture_key(culture)
    persona = key == ONE if persona is None else persona
    suite = "culturellm" if key == ONE else f"culturellm_{key}"
    return [suite] + [f"wvs_{c.slug}{'_persona' if persona else ''}" for c in countries_of(key)]
