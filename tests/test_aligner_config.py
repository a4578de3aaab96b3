"""culture-align's settings are refused before the model loads: the optimiser's own needs, the
types of its settings, and the countries (no model here: a nonexistent --model folder shows that
nothing was loaded)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from aligners.cli import main as align_main
from aligners.cli import parse_args
from aligners.optimizers import OPTIMIZERS, DifferentialEvolution, make_optimizer, register_optimizer

BASE = ["--model", "m", "--country", "USA", "--output", "o"]


def _refused(tmp_path, capsys, *args) -> str:
    """The one-line error of a run that stopped before loading its (missing) model or writing."""
    out = tmp_path / "out"
    assert align_main(["--model", str(tmp_path / "no-model"), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    return err


# ---- 1. the optimiser's own requirement on the population --------------------------------------

@pytest.mark.parametrize("optimizer, small, message", [
    ("de", 3, "--population 3: Differential Evolution (--optimizer de) needs a population of at least 4; "
              "use --population 4 or more"),
    ("cma", 1, "--population 1: CMA-ES (--optimizer cma) needs a population of at least 2; "
               "use --population 2 or more"),
])
def test_the_optimisers_population_is_checked_with_the_config(optimizer, small, message, tmp_path, capsys):
    err = _refused(tmp_path, capsys, "--country", "USA", "--optimizer", optimizer, "--population", str(small))
    assert err == f"culture-align: {message}\n"
    config = tmp_path / "run.yaml"  # the same from a --config file
    config.write_text(f"model: m\ncountry: USA\noutput: o\noptimizer: {optimizer}\npopulation: {small}\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_args(["--config", str(config)])
    # one more is enough
    assert parse_args(BASE + ["--optimizer", optimizer, "--population", str(small + 1)]).population == small + 1


def test_building_an_optimiser_directly_checks_the_same():
    with pytest.raises(ValueError, match=r"--population 3: Differential Evolution .* at least 4"):
        DifferentialEvolution(2, population=3, bound=1.0, seed=0)
    with pytest.raises(ValueError, match=r"--population 1: CMA-ES .* at least 2"):
        make_optimizer("cma", 2, population=1, bound=1.0, seed=0)


def test_cma_needs_two_dimensions_and_says_so_before_loading(tmp_path, capsys):
    # cma 4.x fails in one dimension once its step outgrows a third of the box, at the first tell
    # ("not yet initialized (dimension needed)"), after a whole generation was scored
    message = ("--subspace-dim 1: CMA-ES (--optimizer cma) needs a search space of at least 2 dimensions; "
               "use --subspace-dim 2 or more, or --optimizer de")
    err = _refused(tmp_path, capsys, "--country", "USA", "--optimizer", "cma", "--subspace-dim", "1")
    assert err == f"culture-align: {message}\n"
    with pytest.raises(ValueError, match=re.escape(message)):
        make_optimizer("cma", 1, population=4, bound=1.0, seed=0)
    assert parse_args(BASE + ["--optimizer", "cma", "--subspace-dim", "2"]).subspace_dim == 2
    assert parse_args(BASE + ["--subspace-dim", "1"]).subspace_dim == 1  # DE searches one dimension
    opt = make_optimizer("de", 1, population=4, bound=1.0, seed=0)
    opt.ask()
    opt.tell([1.0, 2.0, 3.0, 4.0])
    assert opt.ask().shape == (4, 1)


# ---- 2. the optimiser's settings by type --------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--optimizer-args", '{"f": "0.7"}'], "--optimizer-args: f of --optimizer de must be a number (float), "
                                           "got '0.7' (str)"),
    (["--optimizer-args", '{"cr": true}'], "--optimizer-args: cr of --optimizer de must be a number (float), "
                                           "got True (bool)"),
    (["--optimizer", "cma", "--optimizer-args", '{"sigma0": null}'],
     "--optimizer-args: sigma0 of --optimizer cma must be a number (float), got None (NoneType)"),
    (["--optimizer-args", '{"F": 0.7}'], "optimizer 'de' has no setting(s) 'F' (did you mean 'f'?); its settings: ['f', 'cr']"),
])
def test_optimizer_args_of_the_wrong_type_are_one_line_errors(extra, message, tmp_path, capsys):
    assert _refused(tmp_path, capsys, "--country", "USA", *extra) == f"culture-align: {message}\n"


def test_an_int_is_a_float_setting_and_a_yaml_bool_is_not(tmp_path):
    cfg = parse_args(BASE + ["--optimizer-args", '{"f": 1, "cr": 0}'])
    assert cfg.optimizer_args == {"f": 1.0, "cr": 0.0}
    assert type(cfg.optimizer_args["f"]) is float and type(cfg.optimizer_args["cr"]) is float
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: USA\noutput: o\noptimizer_args: {cr: yes}\n")
    with pytest.raises(ValueError, match=r"cr of --optimizer de must be a number \(float\), got True \(bool\)"):
        parse_args(["--config", str(config)])


@dataclass
class StepsConfig:
    steps: int = field(default=2, metadata={"help": "an int setting"})
    label: str | None = field(default=None, metadata={"help": "an optional str setting"})


class StepsSearch:
    def __init__(self, dim, *, population, bound, seed, steps, label):
        self.steps, self.label = steps, label


@pytest.fixture
def steps_optimizer():
    register_optimizer("steps", StepsSearch, StepsConfig)
    yield "steps"
    OPTIMIZERS.pop("steps")


def test_int_and_optional_settings_of_a_registered_optimiser(steps_optimizer):
    args = ["--optimizer", "steps", "--optimizer-args"]
    assert parse_args(BASE + args + ['{"steps": 3, "label": null}']).optimizer_args == {"steps": 3, "label": None}
    assert parse_args(BASE + args + ['{"label": "x"}']).optimizer_args == {"steps": 2, "label": "x"}
    for value, shown in (("2.0", "2.0 (float)"), ("true", "True (bool)"), ('"3"', "'3' (str)")):
        with pytest.raises(ValueError, match=re.escape(f"steps of --optimizer steps must be an integer (int), "
                                                       f"got {shown}")):
            parse_args(BASE + args + [f'{{"steps": {value}}}'])
    with pytest.raises(ValueError, match=r"label of --optimizer steps must be a string \(str\), got 1 \(int\)"):
        parse_args(BASE + args + ['{"label": 1}'])


# ---- 3. the countries ----------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [["--country", "USA", "--country", "CHN"], ["--countries", "USA", "--country", "CHN"]])
def test_repeated_country_flags_add_up(flags):
    # as culture-steer's --target: every flag's countries, in order (argparse's own "append" would keep the last)
    assert parse_args(["--model", "m", "--output", "o", *flags]).countries == ["USA", "CHN"]


def test_a_country_flag_replaces_the_config_files_list(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: [USA, CHN]\noutput: o\n")
    assert parse_args(["--config", str(config)]).countries == ["USA", "CHN"]
    assert parse_args(["--config", str(config), "--country", "JPN"]).countries == ["JPN"]
    assert parse_args(["--config", str(config), "--country", "JPN", "DEN"]).countries == ["JPN", "DEN"]
    assert parse_args(["--config", str(config), "--country", "JPN", "--country", "DEN"]).countries == ["JPN", "DEN"]


@pytest.mark.parametrize("countries, message", [
    (["USA", "usa"], "'USA' and 'usa' are both USA"),
    (["CHN", "JPN", "China"], "'CHN' and 'China' are both CHI"),
    (["CHI", "chn"], "'CHI' and 'chn' are both CHI"),
])
def test_one_country_named_twice_is_refused_before_loading(countries, message, data_root, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    err = _refused(tmp_path, capsys, "--country", *countries)
    assert err == f"culture-align: --country names one country twice ({message}); give each country once\n"


# ---- 4. numbers the search cannot use ------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--bound", "inf"], "--bound must be positive and at most 1000 (z = 1 moves a prompt vector by about one "
                         "embedding standard deviation), got inf"),
    (["--bound", "1e300"], "--bound must be positive and at most 1000 (z = 1 moves a prompt vector by about one "
                           "embedding standard deviation), got 1e+300"),
    (["--bound", "nan"], "--bound must be positive and at most 1000 (z = 1 moves a prompt vector by about one "
                         "embedding standard deviation), got nan"),
    (["--optimizer", "cma", "--sigma0", "inf"], "--sigma0 (CMA-ES initial step) must be positive and finite, got inf"),
    (["--optimizer", "cma", "--sigma0", "nan"], "--sigma0 (CMA-ES initial step) must be positive and finite, got nan"),
    (["--init-text", ""], "--init-text is empty: give the initial text of --init text, or use --init vocab"),
    (["--init-text", "  "], "--init-text is empty: give the initial text of --init text, or use --init vocab"),
    (["--init", "vocab", "--init-text", "Hello"], "--init-text has no effect with --init vocab (random vocabulary rows); "
                                                  "drop it, or use --init text"),
    (["--init", "vocab", "--init-text", ""], "--init-text has no effect with --init vocab (random vocabulary rows); "
                                             "drop it, or use --init text"),
])
def test_non_finite_bound_and_step_and_an_empty_initial_text_are_refused(extra, message, tmp_path, capsys):
    assert _refused(tmp_path, capsys, "--country", "USA", *extra) == f"culture-align: {message}\n"


def test_the_largest_bound_and_vocab_initialisation_without_a_text_are_accepted():
    assert parse_args(BASE + ["--bound", "1000"]).bound == 1000
    assert parse_args(BASE + ["--init", "vocab"]).init == "vocab"


@pytest.mark.parametrize("objective", ["contrastive", "l1"])
def test_a_country_with_one_hofstede_dimension_is_refused_before_loading(objective, data_root, tmp_path, capsys,
                                                                         monkeypatch):
    """Hofstede's file has only IVR for Andorra: no objective can compare on it. The run stops before the
    model loads, and before USA, named first, is aligned."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    err = _refused(tmp_path, capsys, "--country", "USA", "Andorra", "--objective", objective)
    assert err == ("culture-align: --country 'Andorra': the target has only ['ivr'] of the six dimensions; a comparison "
                   "needs at least 2 (supply a full profile with its source, e.g. --target for Saudi Arabia)\n")


@pytest.mark.parametrize("seed", ["-1", "4294967295"])
def test_a_seed_the_optimisers_cannot_use_is_refused_before_loading(seed, tmp_path, capsys):
    """CMA-ES gives cma seed + 1, which cma reads as a seed from the clock when it is 0 and refuses from
    2**32 on; numpy refuses a negative seed: the run was not reproducible, or failed after the model had
    loaded. One range holds for every optimiser."""
    for optimizer in ("cma", "de"):
        err = _refused(tmp_path, capsys, "--country", "USA", "--optimizer", optimizer, "--seed", seed)
        assert err == f"culture-align: --seed must be a whole number from 0 to 4294967294, got {seed}\n"
    assert parse_args(BASE + ["--optimizer", "cma", "--seed", "4294967294"]).seed == 4294967294


def test_cma_es_reproduces_from_its_seed_and_refuses_one_it_cannot_use():
    import numpy as np

    from aligners.optimizers import CMAES

    def run(seed):
        opt, asked = CMAES(3, population=5, bound=2.0, seed=seed, sigma0=0.3), []
        for _ in range(3):
            z = opt.ask()
            asked.append(z)
            opt.tell((z ** 2).sum(axis=1))
        return np.array(asked)

    assert np.array_equal(run(4294967294), run(4294967294)) and not np.array_equal(run(0), run(1))
    assert np.abs(run(0)).max() <= 2.0  # inside the bound
    with pytest.raises(ValueError, match=r"CMA-ES seed must be from 0 to 4294967294, got -1"):
        CMAES(3, population=5, bound=2.0, seed=-1)


@pytest.mark.parametrize("model", ["{tmp}/no-model", "./no-model"])
def test_a_model_folder_that_does_not_exist_is_a_one_line_error(model, data_root, tmp_path, capsys, monkeypatch):
    """It was a traceback from the hub client ("Repo id must be in the form ...")."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    monkeypatch.chdir(tmp_path)
    model = model.format(tmp=tmp_path)
    out = tmp_path / "out"
    assert align_main(["--model", model, "--country", "USA", "--output", str(out)]) == 2
    assert capsys.readouterr().err == (f"culture-align: --model {model}: no such model folder; give a local model "
                                       "folder or a hub id\n")
    assert not out.exists()


def test_a_model_path_with_a_tilde_is_refused_before_anything_loads(data_root, tmp_path, capsys, monkeypatch):
    """Nothing expands ``~`` (the shell does, a YAML config does not): the folder exists under the home
    folder, but the loader and the fingerprint would take the text as given (a hub id)."""
    monkeypatch.setenv("CULTURE_DATA_DIR", str(data_root))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "tiny").mkdir()
    out = tmp_path / "out"
    assert align_main(["--model", "~/tiny", "--country", "USA", "--output", str(out)]) == 2
    assert capsys.readouterr().err == ("culture-align: --model ~/tiny: a path starting with ~ is not expanded; "
                                       "give the folder's full path\n")
    assert not out.exists()


# ---- 5. an optimiser setting given two ways: what was typed counts, not whether it differs from the default --

def test_a_flag_typed_with_its_default_value_is_given(tmp_path):
    # 0.5 is --f's default: before, --f 0.5 looked "not given", so the mapping's 0.3 ran without a word
    with pytest.raises(ValueError, match=r"^--f and --optimizer-args give f two values$"):
        parse_args(BASE + ["--optimizer-args", '{"f": 0.3}', "--f", "0.5"])
    with pytest.raises(ValueError, match=r"^--f is a setting of --optimizer de, not of cma$"):
        parse_args(BASE + ["--optimizer", "cma", "--f", "0.5"])
    with pytest.raises(ValueError, match=r"^--sigma0 is a setting of --optimizer cma, not of de$"):
        parse_args(BASE + ["--sigma0", "0.5"])
    # the same value twice says the same thing: no clash
    assert parse_args(BASE + ["--optimizer-args", '{"f": 0.3}', "--f", "0.3"]).optimizer_args == {"f": 0.3, "cr": 0.9}
    assert parse_args(BASE + ["--f", "0.5", "--cr", "0.9"]).optimizer_args == {"f": 0.5, "cr": 0.9}


def test_an_optimiser_setting_in_the_config_file_is_checked_as_a_flag(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: USA\noutput: o\noptimizer: cma\nf: 0.5\n")
    with pytest.raises(ValueError, match=rf"^f in {re.escape(str(config))} is a setting of --optimizer de, not of cma$"):
        parse_args(["--config", str(config)])
    config.write_text("model: m\ncountry: USA\noutput: o\nf: 0.5\noptimizer_args: {f: 0.3}\n")
    with pytest.raises(ValueError, match=rf"^f in {re.escape(str(config))} and optimizer_args in "
                                         rf"{re.escape(str(config))} give f two values$"):
        parse_args(["--config", str(config)])
    config.write_text("model: m\ncountry: USA\noutput: o\noptimizer: de\nf: 0.3\n")  # another optimiser on the command line
    with pytest.raises(ValueError, match=r"is a setting of --optimizer de, not of cma$"):
        parse_args(["--config", str(config), "--optimizer", "cma"])


@pytest.mark.parametrize("yaml_text, flags", [
    ("optimizer_args: {f: 0.3}\n", ["--f", "0.5"]),
    ("f: 0.3\n", ["--optimizer-args", '{"f": 0.5}']),
    ("f: 0.3\n", ["--f", "0.5"]),
    ("optimizer_args: {f: 0.3}\n", ["--optimizer-args", '{"f": 0.5}']),
])
def test_the_command_line_overrides_the_config_file_even_with_the_default_value(yaml_text, flags, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: USA\noutput: o\n" + yaml_text)
    assert parse_args(["--config", str(config), *flags]).optimizer_args == {"f": 0.5, "cr": 0.9}
    assert parse_args(["--config", str(config)]).optimizer_args == {"f": 0.3, "cr": 0.9}


@pytest.mark.parametrize("yaml_text, flags", [
    ("", ["--optimizer-args", '{"cr": 0.7}', "--f", "0.3"]),  # both on the command line, each its own setting
    ("f: 0.3\noptimizer_args: {cr: 0.7}\n", []),  # both in the file
    ("f: 0.3\n", ["--optimizer-args", '{"cr": 0.7}']),  # the file's f and the command line's mapping of cr
    ("optimizer_args: {cr: 0.7}\n", ["--f", "0.3"]),
])
def test_a_flag_and_a_mapping_of_other_settings_are_both_taken(yaml_text, flags, tmp_path):
    # the mapping was compared with its defaults filled in: a mapping without f "gave" f 0.5, so --f 0.3 beside it
    # was refused as two values of f, and the file's f 0.3 beside the command line's mapping ran as 0.5
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: USA\noutput: o\n" + yaml_text)
    assert parse_args(["--config", str(config), *flags]).optimizer_args == {"f": 0.3, "cr": 0.7}
