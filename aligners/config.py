"""Settings of a soft-prompt alignment run, from a YAML file with command-line overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from culture_tasks.settings import from_sources

# settings that define the search: a resumed run must agree on all of them
SEARCH_KEYS = ("model", "country", "target", "optimizer", "virtual_tokens", "subspace_dim", "population",
               "bound", "init", "init_text", "f", "cr", "sigma0", "seed", "dtype", "chat_template", "answer_mode")


@dataclass
class AlignConfig:
    model: str
    countries: list[str]
    output: str
    target: list[float] | None = None  # six explicit scores pdi idv mas uai lto ivr (one country only)
    optimizer: str = "de"
    virtual_tokens: int = 4
    subspace_dim: int = 32
    population: int = 16
    generations: int = 20
    bound: float = 1.0
    init: str = "text"
    init_text: str = "Please answer the following survey question."
    f: float = 0.5
    cr: float = 0.9
    sigma0: float = 0.5
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64
    chat_template: bool = False
    answer_mode: str = "expected"
    data_dir: str | None = None
    baselines: bool = True
    resume: bool = False

    def __post_init__(self):
        if isinstance(self.countries, str):
            self.countries = [self.countries]
        if not self.countries:
            raise ValueError("name at least one country (--country)")
        if self.target is not None and len(self.countries) != 1:
            raise ValueError("explicit --target scores apply to exactly one --country")
        if self.target is not None and len(self.target) != 6:
            raise ValueError("--target needs six numbers: pdi idv mas uai lto ivr")
        if self.optimizer not in ("de", "cma"):
            raise ValueError(f"--optimizer must be de or cma, got {self.optimizer!r}")
        for name in ("virtual_tokens", "subspace_dim", "population", "generations", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")

    def for_country(self, country: str) -> dict:
        """The settings recorded with one country's checkpoint."""
        out = {k: v for k, v in asdict(self).items() if k not in ("countries", "resume")}
        out["country"] = country
        return out

    @classmethod
    def from_sources(cls, yaml_path: str | None, overrides: dict) -> AlignConfig:
        return from_sources(cls, yaml_path, overrides, ("model", "countries", "output"), {"country": "countries"})
