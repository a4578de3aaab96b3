"""lm-eval's own command line with this project's ``hf-prompt`` model registered.

``python -m culture_tasks.harness <lm_eval arguments>`` is ``lm_eval <lm_eval arguments>`` plus
``--model hf-prompt`` (``culture_tasks.hf_prompt``): batched generation from prompt-tuning
adapters that gives the one-at-a-time answers.
"""

from __future__ import annotations

import culture_tasks.hf_prompt  # noqa: F401  (registers hf-prompt with lm-eval)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
