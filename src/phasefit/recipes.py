"""Recipes are data: an ordered list of phases, each with option overrides.

A new recipe is a few lines here or in a YAML config::

    recipe:
      name: dae-heavy
      phases: [{dae: {epochs: 4}}, cl, ft]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from .config import PHASE_CONFIGS, PHASE_TITLES, RunConfig, build_config, merge
from .errors import ConfigError


@dataclass(frozen=True)
class Step:
    phase: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    steps: tuple[Step, ...]

    @property
    def phases(self) -> list[str]:
        return [step.phase for step in self.steps]

    def overrides(self) -> dict[str, dict[str, Any]]:
        return {step.phase: dict(step.overrides) for step in self.steps if step.overrides}

    def __str__(self) -> str:
        return " → ".join(PHASE_TITLES[p] for p in self.phases)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in [
        Recipe("3phase", "DAE, then CL with imbalance correction, then FT (the paper's method)", (Step("dae"), Step("cl"), Step("ft"))),
        Recipe("joint", "one phase minimising L_DAE + L_CL at each step, then FT", (Step("joint"), Step("ft"))),
        Recipe("dae+ft", "DAE, then FT (no contrastive phase)", (Step("dae"), Step("ft"))),
        Recipe("cl+ft", "CL with imbalance correction, then FT (no DAE)", (Step("cl"), Step("ft"))),
        Recipe("extra-imb", "3phase with a stronger imbalance correction (max_ratio 20)", (Step("dae"), Step("cl", {"max_ratio": 20.0}), Step("ft"))),
        Recipe("no-imb", "3phase without imbalance correction", (Step("dae"), Step("cl", {"imbalance_correction": False}), Step("ft"))),
        Recipe("ft", "classical fine-tuning with the MLP head only", (Step("ft"),)),
        # Beyond the paper: FT with the components validation kept, then self-training on the unlabelled texts; which
        # components, by what rule and with what gain is generated into benchmarks/RESULTS.md (the validation studies).
        Recipe(
            "ft+st",
            "beyond the paper: FT with a prototype head from the class names and means, plus a supervised contrastive term; a short budget (may stop from step 50, "
            "patience 3); then self-training on the unlabelled texts (the st phase)",
            (Step("ft", {"head": "prototype", "prototype_init": "names+means", "contrastive_weight": 0.5, "min_steps": 50, "patience": 3}), Step("st")),
        ),
    ]
}


# Old names that still work: the first use in a process warns and names the new one.
ALIASES = {"3phase+": "ft+st"}
_warned_aliases: set[str] = set()


def parse_recipe(spec: Any) -> Recipe:
    """A recipe by name, or a custom one from a mapping ``{name, phases: [phase | {phase: {...}}]}``."""
    if isinstance(spec, Recipe):
        return spec
    if isinstance(spec, str) and spec in ALIASES:
        if spec not in _warned_aliases:
            _warned_aliases.add(spec)
            warnings.warn(f"recipe {spec!r} is now called {ALIASES[spec]!r}; the old name will go.", FutureWarning, stacklevel=2)
        spec = ALIASES[spec]
    if isinstance(spec, str):
        if spec not in RECIPES:
            raise ConfigError(f"unknown recipe {spec!r}; the recipes are {', '.join(RECIPES)}.")
        return RECIPES[spec]
    if isinstance(spec, Mapping) and isinstance(spec.get("phases"), list):
        steps = []
        for item in spec["phases"]:
            if isinstance(item, str):
                steps.append(Step(item))
            elif isinstance(item, Mapping) and len(item) == 1 and isinstance(next(iter(item.values())) or {}, Mapping):
                ((phase, overrides),) = item.items()
                steps.append(Step(str(phase), dict(overrides or {})))
            else:
                raise ConfigError(f"recipe phase {item!r}: write a phase name or {{phase: {{option: value}}}}.")
        recipe = Recipe(str(spec.get("name", "custom")), str(spec.get("description", "custom recipe")), tuple(steps))
    else:
        raise ConfigError(f"recipe {spec!r}: give a recipe name ({', '.join(RECIPES)}) or a mapping with a 'phases' list.")
    if not recipe.steps:
        raise ConfigError(f"recipe {recipe.name!r}: the 'phases' list is empty; it must end with the 'ft' phase.")
    unknown = [p for p in recipe.phases if p not in PHASE_CONFIGS]
    if unknown:
        raise ConfigError(f"recipe {recipe.name!r}: unknown phase {unknown[0]!r}; the phases are {', '.join(PHASE_CONFIGS)}.")
    after_ft = recipe.phases[recipe.phases.index("ft") + 1 :] if "ft" in recipe.phases else []
    if recipe.phases.count("ft") != 1 or any(phase != "st" for phase in after_ft) or recipe.phases.count("st") != len(after_ft):
        raise ConfigError(
            f"recipe {recipe.name!r}: must end with the one 'ft' phase that trains the classifier, optionally followed by 'st' phases (self-training)."
        )
    return recipe


def resolve(options: Mapping[str, Any]) -> tuple[RunConfig, Recipe]:
    """Defaults, then the recipe's overrides, then the user's options (YAML and command line)."""
    recipe = parse_recipe(options.get("recipe", "3phase"))
    config = build_config(merge(recipe.overrides(), {k: v for k, v in options.items() if k != "recipe"}))
    config.recipe = (
        recipe.name
        if recipe.name in RECIPES and RECIPES[recipe.name] == recipe
        else {"name": recipe.name, "phases": [{s.phase: dict(s.overrides)} for s in recipe.steps]}
    )
    return config, recipe
