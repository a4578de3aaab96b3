"""Where the installed lm-eval tasks live (for ``--include_path``)."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
