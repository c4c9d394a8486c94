"""``hat data synthetic|prepare``, ``hat train`` and ``hat evaluate``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hat.cli.options import finite_float, float_at_least, int_at_least, positive_float
from hat.io import check_output_dir


def register(commands: argparse._SubParsersAction) -> None:
    _register_data(commands)
    _register_train(commands)
    _register_evaluate(commands)


def _register_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="make or prepare translation data")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION", help="one of the actions below")
    syn = sub.add_parser("synthetic", help="write the embedded synthetic en-de corpus (raw text)")
    syn.add_argument("--out", type=Path, required=True, help="folder for the raw text files")
    syn.add_argument("--train", type=int_at_least(1), default=20000, help="training sentence pairs")
    syn.add_argument("--valid", type=int_at_least(1), default=500, help="validation sentence pairs")
    syn.add_argument("--test", type=int_at_least(1), default=500, help="test sentence pairs")
    syn.add_argument("--seed", type=int, default=1, help="seed of the corpus")
    syn.add_argument("--prepare", action="store_true", help="also run 'prepare' into OUT/bin")
    syn.set_defaults(handler=cmd_synthetic)

    prep = sub.add_parser("prepare", help="sentencepiece + fairseq binarization into a data-bin folder")
    prep.add_argument("--src", required=True, help="source language suffix, e.g. en")
    prep.add_argument("--tgt", required=True, help="target language suffix, e.g. de")
    prep.add_argument("--train", required=True, help="training file prefix (PREFIX.src, PREFIX.tgt)")
    prep.add_argument("--valid", required=True, help="validation file prefix (PREFIX.src, PREFIX.tgt)")
    prep.add_argument("--test", help="test file prefix (optional)")
    prep.add_argument("--out", type=Path, required=True, help="data-bin folder to write")
    prep.add_argument("--bpe", choices=["sentencepiece", "none"], default="sentencepiece", help="subword model to train, or none for text that is already tokenized")
    prep.add_argument("--vocab-size", type=int_at_least(8), default=8000, help="upper bound on the sentencepiece vocabulary")
    prep.add_argument("--joined-dictionary", action=argparse.BooleanOptionalAction, default=True,
                      help="one vocabulary for both languages (needed by spaces with shared embeddings)")
    prep.add_argument("--skip-empty", action="store_true", help="drop pairs with an empty side instead of failing")
    prep.add_argument("--workers", type=int_at_least(1, 256), default=1, help="parallel workers of fairseq's binarization")
    prep.set_defaults(handler=cmd_prepare)

    distil = sub.add_parser("distil", help="sequence-level distillation: a data-bin whose targets a teacher translated")
    distil.add_argument("--checkpoint", type=Path, required=True, help="teacher checkpoint")
    distil.add_argument("--data", type=Path, required=True, help="data-bin folder to start from")
    distil.add_argument("--out", type=Path, required=True, help="data-bin folder to write")
    _add_generation_arguments(distil, "teacher SubTransformer", "train", "split whose targets are replaced")
    distil.set_defaults(handler=cmd_distil)


def _add_generation_arguments(parser: argparse.ArgumentParser, config_help: str, split: str, split_help: str) -> None:
    """--config, --split, --beam, --lenpen and --max-tokens of a command that translates a split."""
    parser.add_argument("--config", type=Path, help=f"{config_help} (default: the checkpoint's own, or the largest)")
    parser.add_argument("--split", default=split, help=split_help)
    parser.add_argument("--beam", type=int_at_least(1, 64), default=5, help="beam size of the generation")
    parser.add_argument("--lenpen", type=finite_float, default=1.0, help="length penalty of the generation")
    parser.add_argument("--max-tokens", type=int_at_least(1), default=4096, help="tokens per batch")


def _register_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="train a SuperTransformer (or a SubTransformer) on fairseq; other options go to fairseq-train"
    )
    train.add_argument("--space", type=Path, required=True, help="search space YAML")
    train.add_argument("--data", type=Path, required=True, help="fairseq data-bin folder")
    train.add_argument("--save-dir", type=Path, required=True, help="checkpoint folder (re-running it resumes)")
    train.add_argument("--fairseq-config", type=Path,
                       help="YAML of fairseq-train options (e.g. max-update: 1000); data, not code: no user-dir")
    train.add_argument("--subtransformer-config", type=Path, help="train this fixed SubTransformer")
    train.add_argument("--restore-file", type=Path, help="start from this checkpoint (e.g. a SuperTransformer)")
    train.add_argument("--finetune", action="store_true", help="with --restore-file: reset optimizer and schedule")
    train.add_argument("--sampler", choices=["uniform", "sandwich"], default="uniform", help="SubTransformer(s) per update: one sampled (HAT), or largest + smallest + one sampled")
    train.add_argument("--distill-from", type=Path, metavar="CKPT",
                       help="distil from this teacher checkpoint (its own SubTransformer, or a SuperTransformer's largest)")
    train.add_argument("--distill-alpha", type=float_at_least(0, 1),
                       help="weight of word-level distillation (default 0.5 when distilling; with --restore-file "
                            "and no --distill-from the teacher is that checkpoint's largest SubTransformer)")
    train.add_argument("--distill-temperature", type=positive_float(), default=1.0,
                       help="softmax temperature of teacher and student when distilling")
    train.set_defaults(handler=cmd_train, accepts_extra_args=True)


def _register_evaluate(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser("evaluate", help="validation loss and BLEU of a SubTransformer")
    ev.add_argument("--checkpoint", type=Path, required=True, help="checkpoint to evaluate")
    ev.add_argument("--data", type=Path, required=True, help="fairseq data-bin folder")
    _add_generation_arguments(ev, "SubTransformer config", "test", "data split to score")
    ev.add_argument("--no-bleu", action="store_true", help="loss only")
    ev.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where the loss and the translations run")
    ev.add_argument("--fp16", action="store_true", help="half precision (with --device cuda)")
    ev.add_argument("--remove-bpe", choices=["auto", "sentencepiece", "subword_nmt", "none"], default="auto",
                    help="subword marks to remove before BLEU; auto: the data folder's sentencepiece model, if any")
    ev.add_argument("--bleu-tokenize", choices=["13a", "intl", "char", "zh", "none"], default="13a",
                    help="sacreBLEU's tokenizer")
    ev.add_argument("--bleu-style", choices=["sacrebleu", "hat"], default="sacrebleu",
                    help="hat: tokenized BLEU with compounds split, as the HAT paper reports it")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(handler=cmd_evaluate)


def cmd_synthetic(args: argparse.Namespace) -> int:
    from hat.data.synthetic import generate_corpus

    check_output_dir(args.out)
    counts = generate_corpus(args.out, args.train, args.valid, args.test, args.seed)
    print(f"wrote {counts} pairs to {args.out}")
    if args.prepare:
        from hat.data.prepare import prepare_data

        out = prepare_data(src="en", tgt="de", train=args.out / "train", valid=args.out / "valid",
                           test=args.out / "test", out=args.out / "bin", vocab_size=1000)
        print(out)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from hat.data.prepare import prepare_data

    check_output_dir(args.out)
    out = prepare_data(src=args.src, tgt=args.tgt, train=args.train, valid=args.valid, test=args.test, out=args.out,
                       bpe=args.bpe, vocab_size=args.vocab_size, joined_dictionary=args.joined_dictionary,
                       skip_empty=args.skip_empty, workers=args.workers)
    print(out)
    return 0


def cmd_distil(args: argparse.Namespace) -> int:
    from hat.data.distill import distil_data
    from hat.space import SubTransformerConfig

    config = SubTransformerConfig.from_yaml(args.config) if args.config else None
    print(distil_data(args.checkpoint, args.data, args.out, config, split=args.split, beam=args.beam,
                      lenpen=args.lenpen, max_tokens=args.max_tokens))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hat.training import Distillation, load_options_file, train

    options = load_options_file(args.fairseq_config) if args.fairseq_config else {}
    distill = None
    if args.distill_from is not None or args.distill_alpha is not None:
        alpha = 0.5 if args.distill_alpha is None else args.distill_alpha
        distill = Distillation(alpha, args.distill_temperature, args.distill_from)
    last = train(space=args.space, data=args.data, save_dir=args.save_dir,
                 subtransformer_config=args.subtransformer_config, restore_file=args.restore_file,
                 reset_optimizer=args.finetune, sampler=args.sampler, options=options, extra_args=args.extra_args,
                 distill=distill)
    print(last)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hat.evaluation import BleuScoring, evaluate
    from hat.space import SubTransformerConfig

    config = SubTransformerConfig.from_yaml(args.config) if args.config else None
    scoring = BleuScoring(remove_bpe=args.remove_bpe, tokenize=args.bleu_tokenize, style=args.bleu_style)
    result = evaluate(args.checkpoint, args.data, config, split=args.split, beam=args.beam, lenpen=args.lenpen,
                      max_tokens=args.max_tokens, bleu=not args.no_bleu, scoring=scoring, device=args.device,
                      fp16=args.fp16)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        bleu = f" | BLEU {result['bleu']:.2f} ({result['sentences']} sentences, beam {args.beam})" if "bleu" in result else ""
        print(f"{args.checkpoint} [{result['archid']}] {args.split}: loss {result['loss']:.3f}{bleu}")
    return 0
