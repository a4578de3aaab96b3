"""Settings of a soft-prompt alignment run; ``culture-align``'s flags are made from these fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from aligners.objectives import OBJECTIVES
from aligners.optimizers import OPTIMIZERS, optimizer_settings, optimizer_spec
from aligners.orders import SEARCH_ORDERS
from culture_tasks.cli_args import check_device, check_dtype, check_finite, parse_floats
from culture_tasks.metadata import check_bool_fields

# settings that define the search: a resumed run must agree on all of them, and on the
# optimiser's own settings (``search_keys``)
SEARCH_KEYS = ("model", "country", "target", "objective", "optimizer", "virtual_tokens", "subspace_dim", "population",
               "bound", "init", "init_text", "seed", "dtype", "chat_template", "answer_mode", "option_order")
# settings of how the losses are computed, compared on a resume too: in half precision the batch size changes the
# losses by rounding (docs/bench_h200.md), and so can the device's kernels and shared stems; a resume under other
# values would mix generations searched under both while alignment.json recorded only the new ones
RUN_KEYS = ("batch_size", "device", "shared_stems")


# the largest --bound: past it the prompts lie thousands of embedding standard deviations out, where
# the model's numbers overflow (--bound 1e300 gave NaN losses)
MAX_BOUND = 1000.0


# the largest --seed: every optimiser's seed range holds it (CMA-ES gives cma seed + 1, which cma reads as
# a seed from the clock when it is 0 and refuses from 2**32 on)
MAX_SEED = 2**32 - 2


def search_keys(settings: dict) -> tuple[str, ...]:
    """SEARCH_KEYS and RUN_KEYS plus the settings of the optimiser ``settings`` names."""
    spec = optimizer_spec(settings["optimizer"])
    return SEARCH_KEYS + RUN_KEYS + tuple(f.name for f in fields(spec.config_fields))


def _help(text: str, **more) -> dict:
    return {"help": text, **more}


@dataclass
class AlignConfig:
    model: str = field(metadata=_help("base model folder (or hub id)"))
    countries: list[str] = field(metadata=_help(
        "one or more countries: Hofstede code, ISO alpha-3 code or name (one checkpoint each)",
        aliases=["--country"], action="extend"))
    output: str = field(metadata=_help("output folder (output/<country> for each of several countries)"))
    target: list[float] | None = field(default=None, metadata=_help(
        "explicit scores pdi,idv,mas,uai,lto,ivr for a single --country (e.g. 95,25,60,80,36,52)",
        type=parse_floats))
    objective: str = field(default="contrastive", metadata=_help(
        "the loss the search minimises, by name: contrastive (default) = z-space distance to the target minus "
        "the mean distance to the other Hofstede countries, i.e. minus the vsm13_margin lm_eval reports; "
        "standardised / standardised_l1 = z-space distance to the target with the common offset removed; "
        "l1 = the soft-prompt paper's raw L1 to the target (constants 0), which rewards any shift of the "
        "index scale (docs/validity.md, docs/aligner_objectives_smollm2)", choices=sorted(OBJECTIVES)))
    optimizer: str = field(default="de", metadata=_help(
        "a registered optimiser by name (built in: de, Differential Evolution; cma, CMA-ES); each one's own "
        "settings are listed below"))
    optimizer_args: dict = field(default_factory=dict, metadata=_help(
        "the optimiser's own settings, set by its flags below (e.g. --f, --cr for de)"))
    virtual_tokens: int = field(default=4, metadata=_help("number of soft-prompt vectors"))
    subspace_dim: int = field(default=32, metadata=_help("dimension k of the searched z"))
    population: int = field(default=16, metadata=_help("candidates per generation"))
    generations: int = field(default=20, metadata=_help("generations to run (may grow on --resume)"))
    bound: float = field(default=1.0, metadata=_help("box bound of z"))
    init: str = field(default="text", metadata=_help(
        "initial prompt: a text's embeddings or random vocabulary rows", choices=["text", "vocab"]))
    init_text: str = field(default="Please answer the following survey question.",
                           metadata=_help("the initial text of --init text"))
    seed: int = field(default=0, metadata=_help("seed of the projection, the initial rows and the optimiser"))
    device: str = field(default="cpu", metadata=_help("torch device, e.g. cpu or cuda"))
    dtype: str = field(default="float32", metadata=_help(
        "model dtype of the search; the reported numbers are scored in float32 (the model loaded again, the "
        "search's copy moved to the CPU meanwhile), as the recorded lm_eval command scores the checkpoint",
        choices=["float32", "float16", "bfloat16", "auto"]))
    batch_size: int = field(default=64, metadata=_help("sequences per forward pass"))
    shared_stems: bool = field(default=True, metadata=_help(
        "during the search, compute a prompt prefix that several survey items share once per candidate and reuse "
        "its keys/values (the same scores to float rounding, ~30 %% fewer positions on VSM13; the reported "
        "losses are always scored in full, as lm_eval does; so are the rows of a model whose sliding window is not "
        "longer than the longest row, or with an SSM or conv layer); --no-shared-stems: every item in full"))
    chat_template: bool = field(default=False, metadata=_help("score as lm_eval --apply_chat_template"))
    answer_mode: str = field(default="expected", metadata=_help(
        "how an item's answer is read from the option probabilities", choices=["expected", "argmax"]))
    option_order: str = field(default="listed", metadata=_help(
        "listed: the items' options in the survey's order (vsm13_<country>, the paper's); balanced: every item "
        "asked in both orders and its answers averaged (vsm13_<country>_balanced, twice the items), so a prompt "
        "cannot lower the loss through the model's bias towards an option's position (docs/validity.md); worst: "
        "every item asked in both orders and a candidate scored by the order where its loss is larger (the larger "
        "of the objective over vsm13_<country> and vsm13_<country>_reversed), so a gain in one order cannot pay "
        "for a loss in the other", choices=sorted(SEARCH_ORDERS)))
    data_dir: str | None = field(default=None, metadata=_help("data root (default: $CULTURE_DATA_DIR)"))
    baselines: bool = field(default=True, metadata=_help(
        "also score the plain model, the persona prompt and the held-out checks (--no-baselines: skip)"))
    resume: bool = field(default=False, metadata=_help(
        "continue the run in --output, with the settings it was made with (--batch-size, --device and "
        "--shared-stems included: an error names a difference)"))
    overwrite: bool = field(default=False, metadata=_help("replace an existing output"))

    def __post_init__(self):
        check_bool_fields(self)
        if isinstance(self.countries, str):
            self.countries = [self.countries]
        if not self.model:
            raise ValueError("name the base model (--model)")
        if not self.countries:
            raise ValueError("name at least one country (--country)")
        if not self.output:
            raise ValueError("name the output folder (--output)")
        if self.target is not None:
            if len(self.countries) != 1:
                raise ValueError("explicit --target scores apply to exactly one --country")
            if len(self.target) != 6:
                raise ValueError("--target needs six numbers: pdi idv mas uai lto ivr")
            check_finite(self.target, "--target")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown --objective {self.objective!r}; choose one of {sorted(OBJECTIVES)}")
        for name in ("virtual_tokens", "subspace_dim", "population", "generations", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {self.seed}")
        # the names the mapping itself gives (--optimizer-args / optimizer_args), before the defaults fill it
        self._mapping_names = frozenset(self.optimizer_args or {})
        self.optimizer_args = optimizer_settings(self.optimizer, self.optimizer_args, population=self.population,
                                                 dim=self.subspace_dim)
        if not 0 < self.bound <= MAX_BOUND:  # also refuses inf and nan
            raise ValueError(f"--bound must be positive and at most {MAX_BOUND:g} (z = 1 moves a prompt vector by about "
                             f"one embedding standard deviation), got {self.bound}")
        if self.init not in ("text", "vocab"):
            raise ValueError(f"--init must be text or vocab, got {self.init!r}")
        if self.init == "text" and not self.init_text.strip():
            raise ValueError("--init-text is empty: give the initial text of --init text, or use --init vocab")
        if self.answer_mode not in ("expected", "argmax"):
            raise ValueError(f"--answer-mode must be expected or argmax, got {self.answer_mode!r}")
        if self.option_order not in SEARCH_ORDERS:
            raise ValueError(f"--option-order must be one of {', '.join(sorted(SEARCH_ORDERS))}, got {self.option_order!r}")
        check_dtype(self.dtype)
        check_device(self.device)

    def for_country(self, country: str) -> dict:
        """The settings recorded with one country's checkpoint (the optimiser's own flattened in)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("countries", "resume", "overwrite", "optimizer_args")}
        out.update(self.optimizer_args)
        out["country"] = country
        return out

    def with_optimizer_configs(self, configs: list, given: dict) -> AlignConfig:
        """Take the chosen optimiser's settings from the parsed per-optimiser dataclasses. ``given``
        (``ConfigParser.given``) says which settings were typed or in the --config file, whatever their
        values: a setting of another optimiser is an error rather than silently ignored, and one given
        both as its flag and in --optimizer-args is an error when the two differ, unless one of them is
        on the command line and the other in the --config file (the command line wins)."""
        chosen = optimizer_spec(self.optimizer).config_fields
        args = dict(self.optimizer_args)
        named = getattr(self, "_mapping_names", frozenset(args))
        mapping = given.get("optimizer_args")
        for config in configs:
            for f in fields(config):
                flag = given.get(f.name)
                if flag is None:
                    continue
                if type(config) is not chosen:
                    owner = next(s.name for s in OPTIMIZERS.values() if s.config_fields is type(config))
                    raise ValueError(f"{flag} is a setting of --optimizer {owner}, not of {self.optimizer}")
                value = getattr(config, f.name)
                if f.name in named and mapping is not None:
                    if mapping.on_command_line and not flag.on_command_line:
                        continue  # the command line's --optimizer-args over the file's key
                    if mapping.on_command_line == flag.on_command_line and args[f.name] != value:
                        raise ValueError(f"{flag} and {mapping} give {f.name} two values")
                args[f.name] = value
        self.optimizer_args = optimizer_settings(self.optimizer, args, population=self.population,
                                                 dim=self.subspace_dim)
        return self
