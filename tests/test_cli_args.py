"""Command lines made from the config dataclasses: flags, help, the --config YAML underneath, strict booleans."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing

import pytest

from aligners.cli import parser as align_parser
from culture_tasks.cli_args import ConfigError, flags_of, parse_bool
from culture_tasks.steering import parser as steer_parser
from trainers.cli import main as train_main
from trainers.cli import parser as train_parser

PARSERS = {"align": align_parser, "augment": lambda: train_parser("augment"), "data": lambda: train_parser("data"),
           "lora": lambda: train_parser("lora"), "steer": steer_parser}
REQUIRED = {"align": ["--model", "m", "--country", "USA", "--output", "o"],
            "augment": ["--generator", "g", "--output", "o"],
            "data": ["--culture", "english", "--output", "o"],
            "lora": ["--model", "m", "--data", "d.jsonl", "--output", "o"],
            "steer": ["--model", "m", "--target", "usa=persona", "--output", "o"]}


@pytest.mark.parametrize("name", PARSERS)
def test_every_boolean_flag_given_bare_is_true(name):
    """`culture-train lora --bf16` (a `bool | None` setting: None = decide from the device) wanted a
    value, while `culture-align --chat-template` took the bare flag."""
    p = PARSERS[name]()
    bools = [f.name for cls in p.dataclass_types for f in dataclasses.fields(cls)
             if f.type in (bool, "bool", "bool | None") or f.type == (bool | None)]
    assert bools
    for flag in bools:
        (cfg, *_) = p.parse_args_into_dataclasses(args=[*REQUIRED[name], f"--{flag}"])
        assert getattr(cfg, flag) is True, flag
        (cfg, *_) = p.parse_args_into_dataclasses(args=[*REQUIRED[name], f"--{flag}", "false"])
        assert getattr(cfg, flag) is False, flag


@pytest.mark.parametrize("name", PARSERS)
def test_every_field_has_a_flag_and_help_text(name):
    p = PARSERS[name]()
    flags = flags_of(p)
    classes = p.dataclass_types
    assert len(classes) >= 1
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
            assert f"--{f.name}" in flags[f.name], f"{cls.__name__}.{f.name} has no flag"
            if "_" in f.name:
                assert f"--{f.name.replace('_', '-')}" in flags[f.name]
            if f.default is not dataclasses.MISSING:  # a flag left out gives the field's own default
                assert p.get_default(f.name) == f.default, f.name
            elif f.default_factory is not dataclasses.MISSING:
                assert p.get_default(f.name) == f.default_factory(), f.name
    main = classes[0]
    assert "overwrite" in {f.name for f in dataclasses.fields(main)}
    assert next(f for f in dataclasses.fields(main) if f.name == "overwrite").metadata["help"] == \
        "replace an existing output"


def test_flags_that_had_none_now_exist_and_the_old_spellings_still_work():
    (cfg,) = train_parser("lora").parse(REQUIRED["lora"] + ["--warmup", "5", "--weight-decay", "0.1",
                                                             "--logging-steps", "3", "--target-modules", "q_proj",
                                                             "v_proj", "--extra", '{"lr_scheduler_type": "cosine"}'])
    assert (cfg.warmup, cfg.weight_decay, cfg.logging_steps) == (5.0, 0.1, 3)
    assert cfg.target_modules == ["q_proj", "v_proj"] and cfg.extra == {"lr_scheduler_type": "cosine"}
    (cfg,) = train_parser("lora").parse(REQUIRED["lora"] + ["--target-modules", "all-linear"])
    assert cfg.target_modules == "all-linear"
    (cfg,) = train_parser("augment").parse(REQUIRED["augment"] + ["--synonym-samples", "5", "--top-p", "0.5"])
    assert cfg.synonym_samples == 5 and cfg.top_p == 0.5
    cfg = align_parser().parse(["--model", "m", "--country", "USA", "CHN", "--output", "o", "--virtual-tokens", "8",
                                "--no-baselines", "--chat-template"])[0]
    assert cfg.countries == ["USA", "CHN"] and cfg.virtual_tokens == 8 and not cfg.baselines and cfg.chat_template


@pytest.mark.parametrize("name", PARSERS)
def test_yaml_unknown_key_names_the_file_and_lists_the_valid_keys(name, tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("overwrit: true\nzzz_qqq: 3\n")
    with pytest.raises(ConfigError) as err:
        PARSERS[name]().parse(REQUIRED[name] + ["--config", str(config)])
    message = str(err.value)
    valid = sorted(f.name for cls in PARSERS[name]().dataclass_types for f in dataclasses.fields(cls))
    assert message.startswith(f"{config}: unknown setting(s) 'overwrit' (did you mean 'overwrite'?), 'zzz_qqq'; "
                              "valid settings: [")
    assert message.endswith(f"valid settings: {valid}") and "\n" not in message


def test_yaml_false_string_is_false_and_flags_override_yaml(tmp_path):
    config = tmp_path / "aug.yaml"
    config.write_text('generator: g\noutput: from_yaml.jsonl\nsynonyms: "false"\nkeep: 3\nthreshold: "0.5"\n')
    (cfg,) = train_parser("augment").parse(["--config", str(config)])
    assert cfg.synonyms is False and cfg.keep == 3 and cfg.threshold == 0.5 and cfg.output == "from_yaml.jsonl"
    (cfg,) = train_parser("augment").parse(["--config", str(config), "--keep", "7", "--synonyms", "yes",
                                            "--output", "flag.jsonl"])
    assert cfg.synonyms is True and cfg.keep == 7 and cfg.output == "flag.jsonl" and cfg.threshold == 0.5
    config.write_text("generator: g\noutput: o\nsynonyms: Off\n")  # YAML 1.1 reads Off as a real boolean
    assert train_parser("augment").parse(["--config", str(config)])[0].synonyms is False
    config.write_text('culture: english\noutput: o\ninclude_seed_questions: "No"\ntag_country: "1"\n')
    (cfg,) = train_parser("data").parse(["--config", str(config)])
    assert cfg.include_seed_questions is False and cfg.tag_country is True


def test_earlier_names_of_the_seed_question_settings_still_parse(tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text('culture: english\noutput: o\ninclude_seeds: "No"\n')
    assert train_parser("data").parse(["--config", str(config)])[0].include_seed_questions is False
    (cfg,) = train_parser("augment").parse(["--generator", "g", "--output", "o", "--seeds", "s.jsonl",
                                            "--chunk-seeds", "3", "--seed", "5"])
    assert (cfg.seed_questions, cfg.questions_per_chunk, cfg.seed) == ("s.jsonl", 3, 5)


@pytest.mark.parametrize("text", ["maybe", "t", "y", "2", "truee", "", "False ", " true"])
def test_bad_boolean_strings_are_errors_naming_the_key_or_flag(text, tmp_path):
    config = tmp_path / "aug.yaml"
    config.write_text(f"generator: g\noutput: o\nsynonyms: {text!r}\n")
    with pytest.raises(ConfigError, match=rf"aug.yaml: synonyms: expected true/false/yes/no/1/0, got {text!r}"):
        train_parser("augment").parse(["--config", str(config)])
    with pytest.raises(ConfigError, match=r"argument --synonyms: expected true/false/yes/no/1/0"):
        train_parser("augment").parse(REQUIRED["augment"] + ["--synonyms", text])


def test_parse_bool_words():
    assert [parse_bool(w) for w in ("true", "TRUE", "Yes", "1", True, 1)] == [True] * 6
    assert [parse_bool(w) for w in ("false", "No", "0", False, 0)] == [False] * 5
    for value in ["on", 2, None, 1.0, "False ", " true", "ture"]:
        with pytest.raises(argparse.ArgumentTypeError, match="expected true/false/yes/no/1/0"):
            parse_bool(value)


@pytest.mark.parametrize("step, text, error", [
    ("lora", "model: m\ndata: [d.jsonl]\noutput: o\nrank: 3.5", "rank: expected int, got 3.5"),
    ("lora", "model: m\ndata: [d.jsonl]\noutput: o\nrank: many", "rank: invalid literal"),
    ("lora", "model: null\ndata: [d.jsonl]\noutput: o", "model: needs a value, got null"),
    ("lora", "model: m\ndata: [d.jsonl]\noutput: o\nmerge: [1]", "merge: expected true/false"),
    ("data", "culture: english\noutput: o\nrule: median", "rule: 'median' is not one of \\['majority', 'mean'\\]"),
    ("lora", "- a list", "expected a mapping of settings, got list"),
])
def test_yaml_values_are_checked_as_flags_are(step, text, error, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(text + "\n")
    with pytest.raises(ConfigError, match=error):
        train_parser(step).parse(["--config", str(config)])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="--config: file .*none.yaml does not exist"):
        train_parser("lora").parse(["--config", str(tmp_path / "none.yaml")])


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert train_main(["lora", "--data", "d.jsonl", "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("culture-train lora: the following arguments are required: --model "
                                       "(give them as flags or in the --config file)\n")
    assert train_main(["data", "--culture", "english", "--output", "o", "--rule", "median"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("culture-train data: argument --rule: invalid choice: 'median'") and err.count("\n") == 1
    assert train_main(["train"]) == 2
    assert capsys.readouterr().err == "culture-train: unknown step 'train'; choose one of augment, data, lora, kfold, kfold-summary\n"


def test_augment_dtype_and_device_are_checked_before_a_model_loads(tmp_path, capsys):
    import torch

    out = tmp_path / "aug.jsonl"
    base = ["augment", "--generator", str(tmp_path / "no-model"), "--output", str(out)]
    assert train_main(base + ["--dtype", "float64"]) == 2
    assert "argument --dtype: invalid choice: 'float64'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train_main(base + ["--device", "cuda:0"]) == 2
        assert capsys.readouterr().err == ("culture-train augment: --device cuda:0: CUDA is not available on this "
                                           "machine; use cpu\n")
    assert not out.exists()


def test_the_readme_commands_parse(tmp_path):
    from aligners.cli import parse_args

    cfg = parse_args("--model m --country USA --optimizer de --virtual-tokens 4 --subspace-dim 32 --population 32 "
                     "--generations 30 --seed 0 --output ckpt/usa".split())
    assert (cfg.countries, cfg.virtual_tokens, cfg.population, cfg.generations) == (["USA"], 4, 32, 30)
    cfg = parse_args(["--model", "m", "--country", "Saudi Arabia", "--target", "95,25,60,80,36,52", "--output", "o"])
    assert cfg.countries == ["Saudi Arabia"] and cfg.target == [95, 25, 60, 80, 36, 52]
    (tmp_path / "run.yaml").write_text("model: m\ngenerations: 50\n")
    cfg = parse_args(["--config", str(tmp_path / "run.yaml"), "--country", "USA", "CHN", "IND", "--output", "ckpt/"])
    assert cfg.countries == ["USA", "CHN", "IND"] and cfg.generations == 50 and cfg.model == "m"
    (cfg,) = train_parser("augment").parse("--generator b --paraphrases 10 --keep 10 --threshold 0.8 "
                                           "--dtype bfloat16 --output runs/aug.jsonl".split())
    assert (cfg.paraphrases, cfg.keep, cfg.threshold, cfg.dtype) == (10, 10, 0.8, "bfloat16")
    (cfg,) = train_parser("augment").parse("--endpoint http://host:8000/v1 --endpoint-model n --output a".split())
    assert cfg.endpoint_model == "n"
    (cfg,) = train_parser("data").parse("--culture one --questions runs/aug.jsonl --output runs/one.jsonl".split())
    assert cfg.culture == "one" and cfg.questions == "runs/aug.jsonl"
    (cfg,) = train_parser("lora").parse("--model b --data runs/one.jsonl --output runs/adapters/one --epochs 2".split())
    assert cfg.data == ["runs/one.jsonl"] and cfg.epochs == 2.0 and cfg.target_modules == "all-linear"


@pytest.mark.parametrize("text, error", [
    ("model: {a: 1}", "model: expected str, got {'a': 1}"),
    ("model: m\nrank: true", "rank: expected int, got True"),
    ("model: m\nseed: [1, 2]", "seed: expected a single value, got a list"),
    ("model: m\nextra: [1]", "extra: expected a single value, got a list"),
    ("model: m\nextra: 3", "extra: expected a JSON object (a mapping), got 3"),
])
def test_yaml_values_of_the_wrong_kind(text, error, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"data: d.jsonl\noutput: o\n{text}\n")
    with pytest.raises(ConfigError, match=re.escape(error)):
        train_parser("lora").parse(["--config", str(config)])
    config.write_text("data: d.jsonl\noutput: o\nmodel: m\nlearning_rate: 1e-4\nextra: {lr_scheduler_type: cosine}\nrank: '8'\n")
    (cfg,) = train_parser("lora").parse(["--config", str(config)])
    assert (cfg.learning_rate, cfg.extra, cfg.rank, cfg.data) == (1e-4, {"lr_scheduler_type": "cosine"}, 8, ["d.jsonl"])


def test_shared_stems_flag_reaches_the_aligner_settings():
    from aligners.cli import parse_args

    base = ["--model", "m", "--country", "USA", "--output", "o"]
    assert parse_args(base).shared_stems is True
    assert parse_args([*base, "--no-shared-stems"]).shared_stems is False
    assert parse_args([*base, "--shared-stems", "false"]).shared_stems is False
    with pytest.raises(ConfigError, match=r"^argument --shared_stems/--shared-stems: expected "
                                          r"true/false/yes/no/1/0, got 'maybe'$"):
        parse_args([*base, "--shared-stems", "maybe"])


@pytest.mark.parametrize("name", PARSERS)
def test_configs_built_in_python_refuse_a_non_bool_in_a_boolean_field(name):
    """``AlignConfig(..., overwrite="no")`` from a notebook gets no flag parsing: truthiness would read it as
    true and replace the run. Every boolean field of every CLI's config refuses a string, naming the field;
    a ``bool | None`` field (decide later) still takes None."""
    configs = PARSERS[name]().parse(REQUIRED[name])
    checked = []
    for cfg in configs:
        hints = typing.get_type_hints(type(cfg))
        bools = [f.name for f in dataclasses.fields(cfg) if f.init and hints[f.name] is bool]
        maybe = [f.name for f in dataclasses.fields(cfg) if f.init and hints[f.name] == (bool | None)]
        for field in bools + maybe:
            with pytest.raises(ValueError, match=rf"^{field} must be true or false, got 'no'$"):
                dataclasses.replace(cfg, **{field: "no"})
        for field in maybe:
            assert getattr(dataclasses.replace(cfg, **{field: None}), field) is None
        checked += bools + maybe
    assert "overwrite" in checked


def test_negative_flag_help_says_what_it_does():
    """``--no-wvs`` sets wvs to false; its help must not repeat the positive flag's text."""
    helps = {a.option_strings[0]: a.help for a in steer_parser()._actions if a.option_strings}
    assert helps["--no_wvs"] == "the opposite of --wvs: sets it to false"
    assert helps["--wvs"].startswith("also run the WVS survey")


def test_steering_targets_repeat_list_and_come_from_yaml(tmp_path):
    """``--target`` repeated (as documented) or with several values, or ``targets:`` in the YAML;
    booleans as strict as everywhere else."""
    (cfg,) = steer_parser().parse(["--model", "m", "--output", "o", "--target", "usa=persona",
                                   "--target", "china=plain", "india=persona", "--no-wvs", "--chat-template"])
    assert cfg.targets == ["usa=persona", "china=plain", "india=persona"] and not cfg.wvs and cfg.chat_template
    assert [r.label for r in cfg.rows] == ["usa:persona", "china:plain", "india:persona"]
    config = tmp_path / "steer.yaml"
    config.write_text("model: m\noutput: o\ntargets: [usa=persona, germany=persona]\nwvs: 'no'\niters: 50\n")
    (cfg,) = steer_parser().parse(["--config", str(config), "--iters", "70"])
    assert (cfg.targets, cfg.wvs, cfg.iters) == (["usa=persona", "germany=persona"], False, 70)
    config.write_text("model: m\noutput: o\ntarget: usa=persona\n")  # the flag's spelling, one value
    assert steer_parser().parse(["--config", str(config)])[0].targets == ["usa=persona"]
    with pytest.raises(ConfigError, match="argument --overwrite: expected true/false/yes/no/1/0, got 'maybe'"):
        steer_parser().parse(REQUIRED["steer"] + ["--overwrite", "maybe"])
    from culture_tasks.steering import SteeringError

    # --model and --target are required unless --rescore names an earlier run's answers
    with pytest.raises(SteeringError, match=r"name at least one --target COUNTRY=METHOD\[:CHECKPOINT\]"):
        steer_parser().parse(["--model", "m", "--output", "o"])
    with pytest.raises(SteeringError, match=r"give --model \(the base model folder\), or --rescore <earlier output>"):
        steer_parser().parse(["--output", "o", "--target", "usa=persona"])
    assert steer_parser().parse(["--output", "o", "--rescore", "earlier"])[0].rows == []


def test_half_precision_is_named_once_float32_not(caplog):
    """bfloat16 moves a VSM13 L1 by up to ~10 points between batch sizes (docs/bench_h200.md): said at start."""
    from culture_tasks.cli_args import warn_half_precision

    with caplog.at_level("WARNING", logger="culture_tasks"):
        warn_half_precision("float32")
        warn_half_precision("auto")
        assert caplog.records == []
        warn_half_precision("bfloat16")
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["--dtype bfloat16"]


def test_target_flags_replace_the_config_list_and_repeated_flags_add_up(tmp_path):
    """``action="extend"`` on top of the --config defaults used to give usa and china here."""
    config = tmp_path / "s.yaml"
    config.write_text("model: m\noutput: o\ntargets: [usa=persona]\n")
    parse = lambda *flags: steer_parser().parse(["--config", str(config), *flags])[0].targets  # noqa: E731
    assert parse() == ["usa=persona"]
    assert parse("--target", "china=persona") == ["china=persona"]
    assert parse("--target", "china=persona", "--target", "india=plain", "germany=persona") == [
        "china=persona", "india=plain", "germany=persona"]
    assert parse("--targets", "china=persona", "--target", "usa=plain") == ["china=persona", "usa=plain"]


def test_yaml_key_given_twice_names_the_file_key_and_lines(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text("model: m\noverwrite: false\ntargets: [usa=persona]\noutput: o\noverwrite: true\n")
    with pytest.raises(ConfigError) as err:
        steer_parser().parse(["--config", str(config)])
    assert str(err.value) == f"{config}: key 'overwrite' is given twice (lines 2 and 5); keep one"
    config.write_text("model: m\ncountry: USA\noutput: o\noptimizer_args: {f: 0.5, f: 0.7}\n")
    with pytest.raises(ConfigError, match=r"s.yaml: key 'f' is given twice \(lines 4 and 4\); keep one$"):
        align_parser().parse(["--config", str(config)])
    # a merge key (<<) may be overridden by the mapping that merges it, as YAML intends
    config.write_text("model: m\ncountry: USA\noutput: o\noptimizer_args: {<<: {f: 0.5}, f: 0.7}\n")
    assert align_parser().parse(["--config", str(config)])[0].optimizer_args["f"] == 0.7


def test_json_mapping_flag_with_a_key_given_twice_is_refused():
    flag = ["--optimizer_args", '{"f": 0.5, "f": 0.7}']
    message = """--optimizer-args: key 'f' is given twice in '{"f": 0.5, "f": 0.7}'; keep one"""
    with pytest.raises(ConfigError, match=re.escape(message)):
        align_parser().parse(REQUIRED["align"] + flag)
    assert align_parser().parse(REQUIRED["align"] + ["--optimizer_args", '{"f": 0.5}'])[0].optimizer_args["f"] == 0.5


def test_append_and_extend_flags_replace_a_default_list(tmp_path):
    from culture_tasks.cli_args import ConfigParser

    @dataclasses.dataclass
    class Lists:
        added: list[str] = dataclasses.field(default_factory=lambda: ["d"], metadata={"action": "append"})
        extended: list[str] = dataclasses.field(default_factory=lambda: ["d"], metadata={"action": "extend"})

    (cfg,) = ConfigParser([Lists]).parse([])
    assert (cfg.added, cfg.extended) == (["d"], ["d"])
    (cfg,) = ConfigParser([Lists]).parse(["--added", "a", "--added", "b", "--extended", "x", "y", "--extended", "z"])
    assert (cfg.added, cfg.extended) == ([["a"], ["b"]], ["x", "y", "z"])
    config = tmp_path / "l.yaml"
    config.write_text("extended: [c1, c2]\n")
    assert ConfigParser([Lists]).parse(["--config", str(config)])[0].extended == ["c1", "c2"]
    assert ConfigParser([Lists]).parse(["--config", str(config), "--extended", "x"])[0].extended == ["x"]


def test_a_second_config_file_is_refused_not_read_instead_of_the_first(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("culture: english\noutput: a.jsonl\nrule: mean\n")
    second.write_text("culture: chinese\noutput: b.jsonl\n")
    for flags in (["--config", str(first), "--config", str(second)], [f"--config={first}", "--config", str(second)]):
        with pytest.raises(ConfigError) as err:
            train_parser("data").parse(flags)
        assert str(err.value) == (f"--config is given twice ({first}, {second}); give one file (flags override "
                                  "its settings)")


def test_a_flag_that_changes_a_config_setting_says_so(tmp_path, caplog):
    config = tmp_path / "a.yaml"
    config.write_text("culture: english\noutput: a.jsonl\nrule: mean\n")
    caplog.set_level("INFO", logger="culture_tasks")
    (cfg,) = train_parser("data").parse(["--config", str(config), "--culture", "arabic", "--rule", "mean"])
    assert (cfg.culture, cfg.rule, cfg.output) == ("arabic", "mean", "a.jsonl")
    assert [r.getMessage() for r in caplog.records] == [
        f"--config {config}: culture 'english' is replaced by the command line's 'arabic'"]


def test_the_parser_knows_which_settings_were_given_and_where(tmp_path):
    config = tmp_path / "a.yaml"
    config.write_text("culture: english\noutput: a.jsonl\nrule: mean\n")
    parser = train_parser("data")
    # --rule majority and --include-seed-questions true are the defaults, typed: given all the same
    (cfg,) = parser.parse(["--config", str(config), "--rule", "majority", "--include-seed-questions", "true"])
    assert (cfg.culture, cfg.rule, cfg.include_seed_questions) == ("english", "majority", True)
    assert {k: str(v) for k, v in parser.given.items()} == {
        "culture": f"culture in {config}", "output": f"output in {config}", "rule": "--rule",
        "include_seed_questions": "--include-seed-questions"}
    assert not parser.given["culture"].on_command_line and parser.given["rule"].on_command_line
    parser.parse(["--culture", "arabic", "--output", "o.jsonl", "--no-include-seed-questions"])
    assert sorted(parser.given) == ["culture", "include_seed_questions", "output"]  # the last parse only


def test_a_yaml_number_with_an_exponent_is_a_number_in_a_mapping_too(tmp_path):
    # PyYAML reads 1e-8 (YAML 1.1 wants 1.0e-8) as the string '1e-8': TrainingArguments took it and
    # torch's AdamW failed on it once the model had loaded; the optimiser refused '1e-1' as "a str"
    config = tmp_path / "c.yaml"
    config.write_text("model: m\ndata: d.jsonl\noutput: o\nlearning_rate: 2E-4\n"
                      "extra: {adam_epsilon: 1e-8, max_grad_norm: 5e+1, adam_beta2: .99e0}\n")
    (cfg,) = train_parser("lora").parse(["--config", str(config)])
    assert cfg.learning_rate == 2e-4
    assert cfg.extra == {"adam_epsilon": 1e-8, "max_grad_norm": 50.0, "adam_beta2": 0.99}
    assert all(type(v) is float for v in cfg.extra.values())
    config.write_text("model: m\ncountry: USA\noutput: o\noptimizer_args: {f: 1e-1, cr: 9E-1}\n")
    assert align_parser().parse(["--config", str(config)])[0].optimizer_args == {"f": 0.1, "cr": 0.9}
    config.write_text("model: m\ndata: d.jsonl\noutput: o\nextra: {run_name: '1e-8'}\n")  # quoted: text
    assert train_parser("lora").parse(["--config", str(config)])[0].extra == {"run_name": "1e-8"}


def test_a_text_setting_keeps_the_yaml_scalar_as_written(tmp_path):
    # a number, a date or a YAML 1.1 boolean word given for a text setting is the text the file holds
    config = tmp_path / "c.yaml"
    config.write_text("model: 0.10\ncountry: [USA, NO]\noutput: 2024-01-01\ninit_text: 1e5\n")
    cfg = align_parser().parse(["--config", str(config)])[0]
    assert (cfg.model, cfg.countries, cfg.output, cfg.init_text) == ("0.10", ["USA", "NO"], "2024-01-01", "1e5")
    config.write_text("model: m\ncountry: NO\noutput: '0123'\ninit_text: 0123\n")
    cfg = align_parser().parse(["--config", str(config)])[0]
    assert (cfg.countries, cfg.output, cfg.init_text) == (["NO"], "0123", "0123")


@pytest.mark.parametrize("flags, named", [
    (["--no-wvs"], "--wvs"), (["--dtype", "float32"], "--dtype"), (["--device", "cpu", "--batch-size", "8"],
                                                                   "--device, --batch-size"),
    (["--chat-template"], "--chat-template"),
])
def test_steering_settings_of_the_answers_are_refused_with_rescore(flags, named, tmp_path):
    # the answers, and how they were computed, are the stored run's: these settings did nothing there
    from culture_tasks.steering import SteeringError
    from culture_tasks.steering import parse_args as steer_args

    with pytest.raises(SteeringError) as err:
        steer_args(["--rescore", "earlier", "--output", "o", *flags])
    assert str(err.value) == (f"{named}: no effect with --rescore, which takes the answers and the settings that "
                              f"computed them from earlier/steering.json; drop {'them' if ',' in named else 'it'}")
    config = tmp_path / "s.yaml"
    config.write_text("rescore: earlier\noutput: o\nwvs: true\n")
    with pytest.raises(SteeringError, match=rf"^wvs in {re.escape(str(config))}: no effect with --rescore"):
        steer_args(["--config", str(config)])
    cfg = steer_args(["--rescore", "earlier", "--output", "o", "--iters", "50", "--seed", "1", "--level", "0.9",
                      "--norm", "1", "--data-dir", "d", "--overwrite"])
    assert (cfg.iters, cfg.seed, cfg.level, cfg.norm) == (50, 1, 0.9, 1)


@pytest.mark.parametrize("text, error", [
    # a YAML boolean is no number: [.., yes] ran with the score 1.0
    ("target: [95, 25, 60, 80, 36, yes]", "target: expected comma-separated numbers, got [95, 25, 60, 80, 36, True]"),
    # a mapping's keys are setting names: {1: 0.3, x: 2} ended in a TypeError traceback while listing them
    ("optimizer_args: {1: 0.3, x: 2}", "optimizer_args: expected a mapping of names, got the key 1 (int)"),
    ("optimizer_args: {null: 0.3}", "optimizer_args: expected a mapping of names, got the key None (NoneType)"),
])
def test_yaml_lists_and_mappings_hold_what_the_flag_would(text, error, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"model: m\ncountry: USA\noutput: o\n{text}\n")
    with pytest.raises(ConfigError) as err:
        align_parser().parse(["--config", str(config)])
    assert str(err.value) == f"{config}: {error}"


def test_a_flag_typed_with_its_default_value_overrides_the_config_file(tmp_path):
    # the README's precedence: the command line over --config, also when the flag repeats the field's default
    config = tmp_path / "run.yaml"
    config.write_text("model: m\ncountry: [USA, CHN]\noutput: o\npopulation: 12\nbaselines: false\n"
                      "chat_template: true\nobjective: l1\ndata_dir: /d\n")
    parser = align_parser()
    cfg = parser.parse(["--config", str(config), "--population", "16", "--baselines", "--chat-template", "false",
                        "--objective", "contrastive", "--country", "USA"])[0]
    assert (cfg.population, cfg.baselines, cfg.chat_template, cfg.objective, cfg.countries) == \
        (16, True, False, "contrastive", ["USA"])
    assert all(parser.given[k].on_command_line for k in ("population", "baselines", "chat_template", "objective",
                                                         "countries"))
    assert cfg.data_dir == "/d" and not parser.given["data_dir"].on_command_line


def test_a_config_file_that_cannot_be_read_is_named(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("model: m\ninit_text: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:  # it was "'utf-8' codec can't decode byte 0xe9 ...", naming no file
        align_parser().parse(["--config", str(bad)])
    assert str(err.value) == f"{bad}: not UTF-8 text (byte 0xe9 at position 23); save the file as UTF-8"
    with pytest.raises(ConfigError) as err:  # it said "does not exist"
        align_parser().parse(["--config", str(tmp_path)])
    assert str(err.value) == f"--config: {tmp_path} is a folder; name the YAML file"


def test_a_yaml_scalar_for_a_list_setting_is_a_list_of_one_as_the_flag_gives(tmp_path):
    config = tmp_path / "c.yaml"
    # runs: one file was read as a string, so its characters were taken as the files ("s: no such file")
    config.write_text("runs: some/kfold.json\noutput: s.md\n")
    assert train_parser("kfold-summary").parse(["--config", str(config)])[0].runs == ["some/kfold.json"]
    # target_modules: q_proj reached peft as a string, a pattern that no module's full name matches
    config.write_text("model: m\ndata: d.jsonl\noutput: o\ntarget_modules: q_proj\n")
    assert train_parser("lora").parse(["--config", str(config)])[0].target_modules == ["q_proj"]
    assert train_parser("lora").parse(REQUIRED["lora"] + ["--target-modules", "q_proj"])[0].target_modules == ["q_proj"]
    config.write_text("model: m\ndata: d.jsonl\noutput: o\ntarget_modules: all-linear\n")
    assert train_parser("lora").parse(["--config", str(config)])[0].target_modules == "all-linear"


@pytest.mark.parametrize("device", ["gpu", "CPU", "cpu:0", "cuda:1", "cuda:x"])
def test_a_device_that_lm_eval_would_replace_is_refused(device, monkeypatch):
    # lm-eval's HFLM puts the model on cuda (or the cpu) for any device it does not list, without a word,
    # and the run recorded the name given: --device gpu ran on the CPU here as "device": "gpu"
    import torch

    from culture_tasks.cli_args import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError) as err:
        align_parser().parse(REQUIRED["align"] + ["--device", device])
    assert str(err.value) == f"--device {device}: not a device here; use cpu, cuda or cuda:0"
    for good in ("cpu", "cuda", "cuda:0"):
        check_device(good)
    with pytest.raises(ValueError, match=r"^--eval-device gpu: not a device here; use cpu, cuda or cuda:0$"):
        check_device("gpu", "--eval-device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # and on a machine without a GPU
    with pytest.raises(ValueError, match=r"^--device gpu: not a device here; use cpu$"):
        check_device("gpu")


@pytest.mark.parametrize("name, key, setting", [
    ("align", "no_baselines", "baselines"), ("align", "no_shared_stems", "shared_stems"),
    ("augment", "no_synonyms", "synonyms"), ("data", "no_include_seed_questions", "include_seed_questions"),
    ("steer", "no_wvs", "wvs")])
def test_yaml_key_of_a_no_flag_names_the_setting_to_write(name, key, setting, tmp_path):
    # `no_baselines: true` (the flag --no-baselines with underscores, as the help texts describe the keys) was
    # refused as an unknown setting among the valid ones, with no word that baselines: false is the key
    config = tmp_path / "settings.yaml"
    config.write_text(f"{key}: true\n")
    with pytest.raises(ConfigError) as err:
        PARSERS[name]().parse(REQUIRED[name] + ["--config", str(config)])
    assert str(err.value) == (f"{config}: {key} is not a setting (--{key.replace('_', '-')} is the flag that sets "
                              f"{setting} to false); write {setting}: false")


@pytest.mark.parametrize("text, seed", [("010", 10), ("1_000", 1000), ("+7", 7)])
def test_a_yaml_integer_is_decimal_as_on_the_command_line(tmp_path, text, seed):
    # YAML 1.1 reads 010 as octal 8: `seed: 010` searched with seed 8 while `--seed 010` gives 10
    config = tmp_path / "c.yaml"
    config.write_text(f"model: m\ncountry: USA\noutput: o\nseed: {text}\n")
    assert align_parser().parse(["--config", str(config)])[0].seed == seed
    assert align_parser().parse(["--model", "m", "--country", "USA", "--output", "o", "--seed", text])[0].seed == seed


@pytest.mark.parametrize("text", ["1:00", "0x1f", "0b11", "0o17"])
def test_yaml_1_1_sexagesimal_hex_and_binary_integers_are_refused_as_the_flag_refuses_them(tmp_path, text):
    # YAML 1.1 reads 1:00 as 60, 0x1f as 31 and 0b11 as 3; the flag int() refuses them, and so does the file
    config = tmp_path / "c.yaml"
    config.write_text(f"model: m\ndata: d.jsonl\noutput: o\nmax_steps: {text}\n")
    with pytest.raises(ConfigError) as err:
        train_parser("lora").parse(["--config", str(config)])
    assert str(err.value) == f"{config}: max_steps: invalid literal for int() with base 10: '{text}'"
    config.write_text("model: m\ndata: d.jsonl\noutput: o\nlearning_rate: 1:30.5\n")  # sexagesimal float 90.5
    with pytest.raises(ConfigError, match=r"learning_rate: could not convert string to float: '1:30.5'"):
        train_parser("lora").parse(["--config", str(config)])


@pytest.mark.parametrize("step", ["lora", "kfold"])
def test_epochs_beside_max_steps_is_refused_as_a_setting_with_no_effect(step, tmp_path, capsys):
    # the step count decides; --epochs was recorded in training.json as if it had
    out = tmp_path / "out"
    base = [step, "--model", "m", "--data", "d.jsonl", "--output", str(out), "--max-steps", "10"]
    assert train_main([*base, "--epochs", "5"]) == 2
    assert capsys.readouterr().err == (f"culture-train {step}: --epochs has no effect with --max-steps 10 (the step "
                                       "count decides how long it trains); give one of them\n")
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 3\n")  # the default value, given all the same
    assert train_main([*base, "--config", str(config)]) == 2
    assert f"epochs in {config} has no effect with --max-steps 10" in capsys.readouterr().err
    assert not out.exists()
    (cfg,) = train_parser(step).parse([*base[1:], "--epochs", "5", "--max-steps", "-1"])
    assert (cfg.epochs, cfg.max_steps) == (5.0, -1)


def test_the_same_training_rows_given_twice_are_refused(tmp_path, capsys):
    # read twice: every example trained at double weight, the epoch twice as long, training.json's count doubled
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}\n')
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(rows.read_bytes())
    for second in (str(rows), str(copy)):
        assert train_main(["lora", "--model", "m", "--data", str(rows), second, "--output", str(tmp_path / "o")]) == 2
        assert capsys.readouterr().err == (f"culture-train lora: --data {second} holds the same rows as {rows}, so "
                                           "every example would be trained on twice; give each file once\n")
