"""`audit explain`: attribute one generation and write an HTML heatmap and/or JSON."""

from __future__ import annotations

import argparse


def add_commands(sub, *, common, run_args) -> None:
    from .options import INTEGRATION_METHODS

    p = sub.add_parser("explain", help="explain one generation: which prompt tokens drove each generated token",
                       description="Generate (or take --target) and attribute every generated token to the tokens before it "
                                   "with Captum; print the top sources and a faithfulness check, and write -o FILE "
                                   "(.html heatmap or .json). `audit ls` lists the methods.")
    p.add_argument("--model", "-m", default="builtin:tiny", help="model spec: builtin:tiny, builtin:smollm2, builtin:micro, a local model directory or a .gguf file")
    p.add_argument("--prompt", "-p", required=True, help="the prompt text")
    p.add_argument("--target", "-t", help="the continuation to explain (default: generate one greedily)")
    p.add_argument("--method", default="auto", help="attribution method (default: auto = integrated_gradients under 20M "
                                                     "parameters, feature_ablation above: seconds on a CPU)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to generate when no --target is given")
    p.add_argument("--n-steps", type=int, default=20, help="integrated gradients: first integration points (refined where incomplete)")
    p.add_argument("--max-n-steps", type=int, default=400, help="integrated gradients: cap on points; short of the "
                                                                "tolerance at the cap, the explanation is flagged NOT COMPLETE")
    p.add_argument("--tolerance", type=float, default=0.01, help="integrated gradients: completeness tolerance (default 0.01)")
    p.add_argument("--integration", default="gausslegendre", choices=INTEGRATION_METHODS, help="integrated gradients: quadrature rule")
    p.add_argument("--baseline", default="auto", help="token that stands for 'absent': auto (unk, else pad, else eos), "
                                                       "pad, eos, unk, bos or a token id")
    p.add_argument("--batch-size", type=int, help="rows per forward pass (default: about 8k tokens per pass)")
    p.add_argument("--no-faithfulness", action="store_true", help="skip the deletion check")
    p.add_argument("--top-k", type=int, default=3, help="faithfulness: sources replaced per step")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE", help="write FILE (.html or .json; repeatable)")
    common(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from .files import explain_to_files, text_summary

    e, paths = explain_to_files(args.model, args.prompt, target=args.target, outputs=args.output, method=args.method,
                                max_new_tokens=args.max_new_tokens, n_steps=args.n_steps, max_n_steps=args.max_n_steps,
                                completeness_tolerance=args.tolerance, integration=args.integration,
                                baseline=args.baseline, internal_batch_size=args.batch_size,
                                faithfulness=not args.no_faithfulness, top_k=args.top_k)
    print(text_summary(e))
    for path in paths:
        print(f"wrote {path}")
    return 0
