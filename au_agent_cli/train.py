"""``au-agent train``: render a recipe, run llamafactory-cli, write the agent card (``llamafactory_configs.train``)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from au_core import argtypes

from .options import Handler

log = logging.getLogger("au_agent")


def add_arguments(p: argparse.ArgumentParser) -> Handler:
    from llamafactory_configs.recipe import training_recipe_names
    from llamafactory_configs.train import TrainOptions

    p.add_argument("--recipe", default=argtypes.default_of(TrainOptions, "recipe"),
                   help=f"recipe name in llamafactory_configs/ ({', '.join(training_recipe_names())}) or a YAML "
                        "file; default %(default)s")
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder written by prepare-data")
    p.add_argument("--base-model", help="base model folder or hub id (default: the recipe's)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder; resumed from its last checkpoint when it has one")
    p.add_argument("--overwrite", action="store_true", help="delete the previous run in --out and start over")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="recipe overrides, e.g. num_train_epochs=5 per_device_train_batch_size=2")

    def run(a: argparse.Namespace) -> int:
        from llamafactory_configs.train import TrainOptions, train_agent

        card = train_agent(TrainOptions(dataset=a.dataset, out=a.out, recipe=a.recipe, base_model=a.base_model,
                                        overwrite=a.overwrite, overrides=a.overrides, echo=not a.quiet))
        if card is not None:
            log.info("agent written to %s (load it with --agent %s)", a.out / "agent_card.json", a.out)
        return 0

    return run
