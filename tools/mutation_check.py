"""Mutation check of the fidelity tests (issue 20): does a comparison with reference output notice
each recipe or model value being wrong?

Each mutation is one textual edit (an exact old -> new string in a named file). The tool copies the
checkout's tracked files (as they are in the working tree) to a temporary directory, applies one
mutation at a time there (never to the checkout), runs the fidelity tests named for it with this
interpreter's pytest, restores the file, and prints per mutation whether the tests caught it (some
failed) or it survived (all passed), then a summary. An old string that is not in its file exactly
once stops the tool before anything runs, so a mutation cannot silently become a no-op.

Only tests that compare our output with a reference's count (`FIDELITY_TESTS`): the reference
trajectories, the MobileNetV4 logit and count goldens, the preprocessing goldens. A test that
restates a recipe's constant (tests/train/test_recipes.py, a value checked by name) would "catch"
any edit of that constant and prove nothing, so it may not be named.

Before the mutations, the union of their tests runs once unmutated (`--no-baseline` skips it): a
test that fails without a mutation would count every mutation as caught.

    /path/to/python tools/mutation_check.py --list
    /path/to/python tools/mutation_check.py --quick            # the mutations with fast tests only
    /path/to/python tools/mutation_check.py -k ema -k l2       # names containing "ema" or "l2"
    /path/to/python tools/mutation_check.py --only mnv3s_bessel_off,b0_bessel_on
    /path/to/python tools/mutation_check.py --markdown          # all of them (about an hour on 2 CPU cores)

Exit status: 0 when every mutation run was caught, 1 when any survived, 2 on a usage error, a
mutation string not found, a failing baseline or a test run that did not complete.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAJ = "tests/train/test_reference_trajectory.py"
PAST = "tests/train/test_reference_trajectory_past_warmup.py"
MNV4 = "tests/models/test_mobilenet_v4.py"
PARITY = "tests/data/test_reference_parity.py"

#: Test functions that compare flaxnets with a reference's own output; a mutation may name only these.
FIDELITY_TESTS = (
    f"{TRAJ}::test_trajectory_float32",
    f"{TRAJ}::test_learning_rate_per_step",
    f"{PAST}::test_trajectory_past_warmup",
    f"{PAST}::test_trajectory_past_warmup_float64",
    f"{PAST}::test_learning_rate_past_warmup",
    f"{MNV4}::test_logits_match_tf_vision",
    f"{MNV4}::test_logits_with_each_side_s_initial_layer_scale_match_tf_vision",
    f"{MNV4}::test_trainable_params_match_tf_vision_s_count",
    f"{PARITY}::test_tf_tpu_eval_of_each_recipe_matches_preprocess_for_eval",
)


def trajectory(case: str, replicas=(1, 2)) -> tuple[str, ...]:
    """The case's step-0 trajectories on `replicas`, its one-replica float32 trajectory past warmup
    (global step 100,000, where weight decay, L2, Adam's moments and the configured EMA decay
    act) and its float64 trajectories past warmup on `replicas` (where L2 and AdamW's weight
    decay rise above the references' spread, with the recipe's own BatchNorm group)."""
    return (tuple(f"{TRAJ}::test_trajectory_float32[{case}-{r}]" for r in replicas)
            + (f"{PAST}::test_trajectory_past_warmup[{case}-1]",)
            + tuple(f"{PAST}::test_trajectory_past_warmup_float64[{case}-{r}x-t100000]" for r in replicas))


def fresh_adam(case: str) -> tuple[str, ...]:
    """The case's float64 trajectory from step 0 (Adam's bias corrections far from 1)."""
    return (f"{PAST}::test_trajectory_past_warmup_float64[{case}-1x-t0]",)


def lr_per_step(case: str) -> tuple[str, ...]:
    return tuple(f"{TRAJ}::test_learning_rate_per_step[{case}-{r}]" for r in (1, 2))


MNV3S, MNV3L, B0 = "mobilenet_v3_small_tfvision", "mobilenet_v3_large_tfvision", "efficientnet_b0_tpu"
R = "src/flaxnets/recipes/"
MNV3S_FILE, MNV3L_FILE, TPU_FILE = R + f"{MNV3S}.py", R + f"{MNV3L}.py", R + "_efficientnet_tpu.py"
MNV4_FILE = "src/flaxnets/models/mobilenet_v4.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    #: True where the tests take seconds (no train-step compiles).
    quick: bool = False


MUTATIONS = (
    # The list.
    Mutation("mnv3l_adamw_wd_0", "MNv3-L AdamW weight decay 0.1 -> 0", MNV3L_FILE,
             "weight_decay=0.1,", "weight_decay=0.0,", trajectory(MNV3L)),
    Mutation("mnv3l_beta2_0.99", "MNv3-L Adam beta2 0.999 -> 0.99", MNV3L_FILE,
             "b2=0.999,", "b2=0.99,", trajectory(MNV3L)),
    Mutation("mnv3s_l2_0", "MNv3-S L2 1e-5 -> 0", MNV3S_FILE,
             "l2=1e-5,", "l2=0.0,", trajectory(MNV3S)),
    Mutation("mnv3s_l2_on_depthwise", "MNv3-S depthwise kernels put under L2", MNV3S_FILE,
             'l2_exclude=("bn_scale", "bn_bias", "bias", "depthwise_kernel")',
             'l2_exclude=("bn_scale", "bn_bias", "bias")', trajectory(MNV3S)),
    Mutation("b0_l2_0", "B0 L2 1e-5 -> 0", TPU_FILE, "l2=1e-5,", "l2=0.0,", trajectory(B0)),
    Mutation("mnv3s_ema_0.999", "MNv3-S EMA decay 0.9999 -> 0.999", MNV3S_FILE,
             "EmaConfig(decay=0.9999,", "EmaConfig(decay=0.999,", trajectory(MNV3S)),
    Mutation("b0_ema_0.99", "B0 EMA decay 0.9999 -> 0.99", TPU_FILE,
             "EmaConfig(decay=0.9999,", "EmaConfig(decay=0.99,", trajectory(B0)),
    Mutation("mnv4_layer_scale_1e-4", "MNv4 layer-scale init 1e-5 -> 1e-4 (Hybrid-M)", MNV4_FILE,
             '"hybrid_medium": (_hybrid_medium, 32, "relu", 1e-5)',
             '"hybrid_medium": (_hybrid_medium, 32, "relu", 1e-4)',
             (f"{MNV4}::test_logits_with_each_side_s_initial_layer_scale_match_tf_vision"
              "[mobilenet_v4_hybrid_medium]",), quick=True),
    Mutation("mnv4_conv_large_blocks_swapped", "MNv4 Conv-L: two blocks of stage 3 swapped", MNV4_FILE,
             "_uir(5, 3, 1, 4, 192, a, r=5), _uir(3, 0, 1, 4, 192, a)),",
             "_uir(3, 0, 1, 4, 192, a), _uir(5, 3, 1, 4, 192, a, r=5)),",
             (f"{MNV4}::test_logits_match_tf_vision[mobilenet_v4_conv_large]",), quick=True),
    Mutation("mnv4_hybrid_large_relu", "MNv4 Hybrid-L GELU -> ReLU", MNV4_FILE,
             '"hybrid_large": (_hybrid_large, 24, "gelu", 1e-5)',
             '"hybrid_large": (_hybrid_large, 24, "relu", 1e-5)',
             (f"{MNV4}::test_logits_match_tf_vision[mobilenet_v4_hybrid_large]",), quick=True),
    Mutation("tpu_eval_crop_0.875", "TF-TPU eval crop fraction size / (size + 32) -> 0.875 (recipes)", TPU_FILE,
             "eval_crop_fraction=size / (size + CROP_PADDING)", "eval_crop_fraction=0.875",
             (f"{PARITY}::test_tf_tpu_eval_of_each_recipe_matches_preprocess_for_eval",), quick=True),
    Mutation("tpu_eval_crop_0.875_model_default", "EfficientNet model default eval crop res / (res + 32) -> 0.875",
             "src/flaxnets/models/efficientnet.py", "res / (res + 32),", "0.875,",
             (f"{PARITY}::test_tf_tpu_eval_of_each_recipe_matches_preprocess_for_eval",), quick=True),
    Mutation("mnv3s_recipe_bn_group_ignored", "MNv3-S recipe's per-replica BN group 128 -> none (whole batch)",
             MNV3S_FILE, "bn_group_size=128,", "bn_group_size=None,", trajectory(MNV3S)),
    Mutation("bn_group_dropped_by_model", "every model builds its BatchNorms without the group size",
             "src/flaxnets/models/blocks.py", "group_size=knobs.bn_group_size,", "group_size=None,",
             trajectory(MNV3S, (2,)) + trajectory(B0, (2,))),
    Mutation("mnv3s_bessel_off", "MNv3-S moving variance unbiased -> biased (TF-Vision is unbiased)", MNV3S_FILE,
             'bn_moving_variance="unbiased"', 'bn_moving_variance="biased"', trajectory(MNV3S)),
    Mutation("b0_bessel_on", "B0 moving variance biased -> unbiased (TF-TPU is biased)", TPU_FILE,
             'bn_moving_variance="biased"', 'bn_moving_variance="unbiased"', trajectory(B0)),
    # Controls the comparisons are known to catch.
    Mutation("mnv3s_label_smoothing_0", "control: MNv3-S label smoothing 0.1 -> 0", MNV3S_FILE,
             "LossConfig(label_smoothing=0.1)", "LossConfig(label_smoothing=0.0)", trajectory(MNV3S, (1,))),
    Mutation("mnv3s_bn_momentum_0.99", "control: MNv3-S BN momentum 0.997 -> 0.99", MNV3S_FILE,
             "bn_momentum=0.997,", "bn_momentum=0.99,", trajectory(MNV3S, (1,))),
    Mutation("mnv3s_bn_epsilon_1e-5", "control: MNv3-S BN epsilon 1e-3 -> 1e-5", MNV3S_FILE,
             "bn_epsilon=1e-3,", "bn_epsilon=1e-5,", trajectory(MNV3S, (1,))),
    Mutation("mnv3s_warmup_from_0", "control: MNv3-S warmup start 0.001 -> 0", MNV3S_FILE,
             "warmup_start_lr=0.001,", "warmup_start_lr=0.0,", lr_per_step(MNV3S), quick=True),
    Mutation("mnv3s_channels_reversed", "control: MNv3-S mean/std channel order reversed (BGR)", MNV3S_FILE,
             "mean=IMAGENET_MEAN, std=IMAGENET_STD,", "mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1],",
             trajectory(MNV3S, (1,))),
    # Further values found in the recipes.
    Mutation("b0_rmsprop_initial_scale_0", "B0 RMSProp rms start 1.0 (TF1) -> 0.0", TPU_FILE,
             "initial_scale=1.0,", "initial_scale=0.0,", trajectory(B0, (1,))),
    Mutation("mnv3l_epsilon_hat_off", "MNv3-L Adam epsilon on the bias-corrected sqrt(v) (Keras: uncorrected)",
             MNV3L_FILE, "epsilon_hat=True,", "epsilon_hat=False,", trajectory(MNV3L, (1,)) + fresh_adam(MNV3L)),
    Mutation("b0_bn_momentum_0.9", "B0 BN momentum 0.99 -> 0.9", TPU_FILE,
             "bn_momentum=0.99, bn_epsilon=1e-3,", "bn_momentum=0.9, bn_epsilon=1e-3,", trajectory(B0, (1,))),
    Mutation("mnv4_conv_small_bn_epsilon", "MNv4 Conv-S model BN epsilon 1e-6 -> 1e-3", MNV4_FILE,
             "bn_momentum=0.95, bn_epsilon=1e-6)", "bn_momentum=0.95, bn_epsilon=1e-3)",
             (f"{MNV4}::test_logits_match_tf_vision[mobilenet_v4_conv_small]",), quick=True),
)


def check_mutations(mutations) -> list[str]:
    """Problems with the list itself: duplicate names, tests that are not fidelity tests, old strings
    not found exactly once in the checkout."""
    problems = []
    names = [m.name for m in mutations]
    problems += [f"duplicate mutation name {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    for m in mutations:
        for test in m.tests:
            if test.split("[")[0] not in FIDELITY_TESTS:
                problems.append(f"{m.name}: {test!r} is not one of FIDELITY_TESTS")
        path = ROOT / m.file
        if not path.is_file():
            problems.append(f"{m.name}: file {m.file} does not exist")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: {m.old!r} occurs {count} times in {m.file}; expected exactly once")
    return problems


def copy_checkout(dest: Path) -> None:
    """The tracked files of the checkout, as they are in its working tree, under `dest`."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)


def run_tests(checkout: Path, tests, workers: int, log: Path) -> tuple[int, float]:
    """pytest on `tests` in `checkout` (its src first on the path): (exit status, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "slow or not slow",
               "-n", str(workers), *tests]
    start = time.monotonic()
    with log.open("w") as out:
        status = subprocess.run(command, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return status, time.monotonic() - start


def verdict_of(status: int, log: Path) -> str:
    """"caught" where a test failed an assertion (a comparison with the reference), "survived"
    where all passed, else an error: a crash or a collection failure proves nothing."""
    if status == 0:
        return "survived"
    # Each failure's traceback ends in "path.py:LINE: ExceptionType".
    text = log.read_text()
    raised = re.findall(r"^\S+\.py:\d+: (\w+)$", text, flags=re.MULTILINE)
    # pytest-xdist ends a `-x` run at its first failure with "Interrupted" (exit 2).
    stopped = status == 2 and "xdist.dsession.Interrupted: stopping after 1 failures" in text
    if (status == 1 or stopped) and raised and set(raised) == {"AssertionError"}:
        return "caught"
    return f"error (pytest exit {status}; see the log)"


def select(args, parser) -> list[Mutation]:
    chosen = list(MUTATIONS)
    if args.only:
        wanted = [n for group in args.only for n in group.split(",") if n]
        unknown = sorted(set(wanted) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation {', '.join(unknown)}; --list shows them")
        chosen = [m for m in chosen if m.name in wanted]
    if args.k:
        chosen = [m for m in chosen if any(k.lower() in m.name.lower() for k in args.k)]
    if args.quick:
        chosen = [m for m in chosen if m.quick]
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                        help="only mutations whose name contains SUBSTRING (repeatable: any of them)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help="only these mutations, by exact name")
    parser.add_argument("--quick", action="store_true", help="only the mutations whose tests compile no train step")
    parser.add_argument("-n", "--workers", type=int, default=0, help="pytest-xdist workers per test run (default 0)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected tests")
    parser.add_argument("--markdown", action="store_true", help="print the result table as Markdown")
    parser.add_argument("--keep", action="store_true", help="keep the temporary checkout and the pytest logs")
    args = parser.parse_args(argv)

    problems = check_mutations(MUTATIONS)
    if problems:
        print("mutation_check: the mutation list is broken:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    chosen = select(args, parser)
    if args.list:
        for m in chosen:
            print(f"{m.name}{' (quick)' if m.quick else ''}: {m.what}\n    {m.file}\n    " + "\n    ".join(m.tests))
        return 0
    if not chosen:
        print("mutation_check: no mutation selected; --list shows them", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="flaxnets-mutation-"))
    checkout, logs = work / "checkout", work / "logs"
    logs.mkdir()
    copy_checkout(checkout)
    print(f"checkout copied to {checkout}; pytest logs in {logs}", flush=True)
    results, failed_baseline = [], False
    try:
        if not args.no_baseline:
            tests = sorted({t for m in chosen for t in m.tests})
            status, seconds = run_tests(checkout, tests, args.workers, logs / "baseline.log")
            print(f"baseline (unmutated, {len(tests)} tests): exit {status} in {seconds:.0f} s", flush=True)
            if status != 0:
                failed_baseline = True
                print(f"mutation_check: the tests fail without any mutation; see {logs / 'baseline.log'}",
                      file=sys.stderr)
                return 2
        for m in chosen:
            path = checkout / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            try:
                status, seconds = run_tests(checkout, m.tests, args.workers, logs / f"{m.name}.log")
            finally:
                path.write_text(original)
            verdict = verdict_of(status, logs / f"{m.name}.log")
            results.append((m, verdict, seconds))
            print(f"{verdict:>9}  {m.name}  ({seconds:.0f} s)", flush=True)
    finally:
        # Kept where a run went wrong, so that its log can be read.
        if args.keep or failed_baseline or any(v.startswith("error") for _, v, _ in results):
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    if args.markdown:
        print("| mutation | file | tests | result |\n|---|---|---|---|")
        for m, verdict, _ in results:
            tests = ", ".join(f"`{t.split('::', 1)[1]}`" for t in m.tests)
            print(f"| {m.what} | `{m.file}` | {tests} | {verdict} |")
    else:
        for m, verdict, seconds in results:
            print(f"{verdict:>9}  {m.name}: {m.what}")
    caught = sum(v == "caught" for _, v, _ in results)
    survived = [m.name for m, v, _ in results if v == "survived"]
    errors = [m.name for m, v, _ in results if v.startswith("error")]
    print(f"\n{caught} of {len(results)} caught; survived: {', '.join(survived) or 'none'}"
          + (f"; errors: {', '.join(errors)}" if errors else ""))
    if errors:
        return 2
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
