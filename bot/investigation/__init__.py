"""The investigation use case: from a question to a recorded result (`Investigator`), and the pure
mapping from a resolved question to the playbook's `Case` (`bot.investigation.case`)."""

from bot.cluster.lookups import bot_pod_check
from bot.investigation.case import build_case, name_choices, resolution_verdict, workload_refs
from bot.investigation.investigator import (
    Investigator,
    StepCallback,
    cli_asker,
    investigator_sweep,
    serving_investigator,
)

__all__ = [
    "Investigator",
    "StepCallback",
    "bot_pod_check",
    "build_case",
    "cli_asker",
    "investigator_sweep",
    "name_choices",
    "resolution_verdict",
    "serving_investigator",
    "workload_refs",
]
