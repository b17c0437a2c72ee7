"""Recipes: ordered steps (train, prune, finetune, distill, quantize, export) run by the verbs,
with a parity check between steps; "save as recipe" from a variant's lineage."""

from core.recipes._recipe import STEP_KINDS, Recipe, Step, step_config
from core.recipes._run import (
    ParityError,
    check_parity,
    execute_steps,
    recipe_from_lineage,
    run_recipe,
)

__all__ = [
    "STEP_KINDS",
    "ParityError",
    "Recipe",
    "Step",
    "check_parity",
    "execute_steps",
    "recipe_from_lineage",
    "run_recipe",
    "step_config",
]
