"""How good is each scorer on our own labelled trajectories? (`agentrm eval verifier` + audit)

    python bench/verifier_quality.py [--db sqlite:///runs/vq.db] [--group-size 6] [--swe-group 4]
                                     [--branches 2] [--epochs 0] [--audit 4] [--folds 0]
                                     [--train-group 18] [--train-swe-runs 4] [--lora-rank 8]
                                     [--prm-group 4] [--soft-labels] [--prm-aggregate last]
                                     [--judge-aggregate max] [--no-info-gain] [--stop-after STAGE]

Labelled set: the 8 builtin tasks (rollouts in Docker, outcome = the runtime's own check) and the
8 bundled SWE-bench instances (agent mode in Docker, outcome = the tests verifier), both rolled
out by scripted Markov policies that sometimes do the right thing and sometimes not (inspect,
guess, give a wrong answer, apply the gold patch, a cosmetic non-fix or nothing). Groups are
split in two halves (by group, stratified by kind): the PRM is trained on one, every metric is
reported on the other. PRM step labels: Monte-Carlo branch values (progress scorer, K branches
of a prover from sandbox snapshots) on builtin trajectories, outcomes on SWE ones (their
verifier runs outside the sandbox, so branches cannot be graded in place).
More PRM training data comes from extra rollouts of the training tasks only (--train-group,
--train-swe-runs); --lora-rank trains LoRA adapters instead of the head alone. Each PRM variant
has its own directory and scorer name (prm-head-k2-n0, prm-lora8-k4-n18, …), so variants
share one store. --prm-group G adds G rollouts of each generated task (bench/tasks/prm_train.jsonl:
12 families of shell questions, none of the held-out tasks' kinds, each instance its own file and
answer, so a PRM cannot memorise answers) to the PRM's training data, and G rollouts of
prm_val.jsonl as a validation set: the step aggregate of the PRM and of the judge
(--prm-aggregate, --judge-aggregate) is chosen there, never on the held-out tasks.
--soft-labels trains on the branch share itself (Math-Shepherd's soft estimate). A number-of-turns baseline is reported next to the scorers.
Scorers: tests (SWE) / the builtin check — they ARE the labels, AUC 1 by construction —, the
SmolLM2 judge PRM, the trained PRM (SmolLM2 backbone), information gain (SmolLM2, builtin:
needs a ground-truth answer) and the learned hybrid. Every stage is resumable from the store.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path
from typing import Any

from agentrm.protocols import PolicyOutput
from agentrm.rollout.policies.parsing import _call

BUILTIN = {  # task id → (command that reveals the answer, right answer, wrong answers)
    "count-lines": ("wc -l /workspace/data.txt", "137", ["136", "138", "140"]),
    "count-py-files": ("find /workspace/project -name '*.py' | wc -l", "7", ["8", "6", "5"]),
    "find-needle": ("grep -rl NEEDLE-42 /workspace/project", "project/docs/notes/todo.txt",
                    ["project/docs/readme.txt", "project/src/a.txt"]),
    "largest-file": ("ls -lS /workspace/files", "delta.bin", ["gamma.bin", "alpha.bin"]),
    "sum-numbers": ("python3 -c \"print(sum(int(l) for l in open('/workspace/numbers.txt')))\"", "2533",
                    ["2532", "2433", "2633"]),
    "count-errors": ("grep -ci error /workspace/app.log", "24", ["12", "25", "23"]),
    "json-value": ("python3 -c \"import json; print(json.load(open('/workspace/config.json'))"
                   "['database']['port'])\"", "5433", ["8080", "6379"]),
    "fix-total": ("cd /workspace/calc && sed -i 's/sum(xs\\[1:\\])/sum(xs)/' calc.py && python3 test_calc.py",
                  None, ["cd /workspace/calc && sed -i 's/sum(xs\\[1:\\])/sum(xs[:-1])/' calc.py"]),
}
IDLE = ["ls /workspace", "pwd", "ls -la /workspace | head -5"]


def _act(tool: str, args: dict, thought: str) -> PolicyOutput:
    return PolicyOutput({"role": "assistant", "content": thought, "tool_calls": [_call(tool, args)]})


def _commands(messages) -> list[str]:
    out = []
    for m in messages:
        for c in m.get("tool_calls") or []:
            try:
                out.append(json.loads(c["function"]["arguments"]).get("command", ""))
            except (json.JSONDecodeError, AttributeError):
                pass
    return out


class BuiltinSolver:
    """Markov policy: reveal the answer (or idle, or guess), then submit — right with p 0.75 once
    the answer was on screen, mostly wrong before. Memoryless, so it also serves as the prover
    that continues branches from any prefix. `tasks`: more answer tasks whose metadata names the
    command that reveals the answer and the wrong answers (the generated prm_* tasks)."""

    name = "bench:builtin"

    def __init__(self, seed: int, tasks=()):
        self.rng = random.Random(seed)
        self.table = {json.dumps(t.instruction)[1:-1]: (t.metadata["reveal"], t.answer, t.metadata["wrong"])
                      for t in tasks if "reveal" in (t.metadata or {})}

    def _task(self, text: str) -> tuple[str | None, tuple]:
        for key, entry in self.table.items():
            if key in text:
                return None, entry
        tid = next(t for t in BUILTIN if _key(t) in text)
        return tid, BUILTIN[tid]

    def act(self, messages, tools) -> PolicyOutput:
        tid, (cmd, right, wrong) = self._task(json.dumps(messages[:2]))
        done = _commands(messages)
        seen = cmd in done
        steps = sum(m.get("role") == "assistant" for m in messages)
        r = self.rng.random()
        if steps >= 3 or (seen and r < 0.75) or (not seen and r < 0.15):
            good = self.rng.random() < (0.75 if seen else 0.1)
            if right is None:  # a fix task: submitting is the verdict on what was changed
                return _act("submit", {}, "Submitting my change.")
            answer = right if good else self.rng.choice(wrong)
            return _act("submit", {"answer": answer}, f"The answer is {answer}.")
        if tid == "fix-total" and not seen and self.rng.random() < 0.3:
            return _act("bash", {"command": wrong[0]}, "Let me patch calc.py.")
        if not seen and self.rng.random() < 0.65:
            return _act("bash", {"command": cmd}, "Let me look at the data.")
        return _act("bash", {"command": self.rng.choice(IDLE)}, "Let me look around.")


def _key(task_id: str) -> str:
    return {"count-lines": "data.txt", "count-py-files": "Python files", "find-needle": "NEEDLE-42",
            "largest-file": "largest", "sum-numbers": "numbers.txt", "count-errors": "app.log",
            "json-value": "config.json", "fix-total": "calc"}[task_id]


def cosmetic(patch: str) -> str:
    """A non-fix that applies cleanly: the removed lines put back with a comment."""
    out = []
    for line in patch.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            continue
        out.append(line)
        if line.startswith("-") and not line.startswith("---"):
            out.append("+" + line[1:] + "  # handle the edge case")
    return "\n".join(out) + "\n"


class SweSolver:
    """Markov policy on a bundled SWE-bench instance: look at the file, apply the gold patch
    (p .5), a cosmetic non-fix (.3) or nothing (.2), maybe run the tests, submit."""

    name = "bench:swe"

    def __init__(self, seed: int):
        from agentrm.evals.swebench.dataset import load_instances

        self.rng = random.Random(seed)
        self.instances = {i.problem_statement.strip()[:200]: i for i in load_instances("bundled")}

    def act(self, messages, tools) -> PolicyOutput:
        text = json.dumps(messages[:2])
        inst = next(i for key, i in self.instances.items() if json.dumps(key)[1:-1] in text)
        files = re.findall(r"^\+\+\+ b/(\S+)", inst.patch, re.M)
        done = _commands(messages)
        patched = any("git apply" in c for c in done)
        steps = sum(m.get("role") == "assistant" for m in messages)
        if not done and self.rng.random() < 0.6:
            return _act("bash", {"command": f"cd /workspace && cat {files[0]}"}, "Let me read the code.")
        if not patched and steps < 4:
            r = self.rng.random()
            if r < 0.8:
                patch = inst.patch if r < 0.5 else cosmetic(inst.patch)
                cmd = f"cd /workspace && git apply <<'PATCH'\n{patch}PATCH"
                return _act("bash", {"command": cmd}, "I will fix it with this change.")
        if "pytest" not in " ".join(done) and steps < 5 and self.rng.random() < 0.6:
            # no bytecode or cache files: `git add -A` would put them in the agent's patch, which
            # then fails to apply at grading (the bundled images do not exclude __pycache__/)
            return _act("bash", {"command": "cd /workspace && PYTHONDONTWRITEBYTECODE=1 python -m pytest -q "
                                            "-p no:cacheprovider 2>&1 | tail -5"},
                        "Let me run the tests.")
        return _act("submit", {}, "The issue is fixed.")


# ------------------------------------------------------------------------------ PRM training tasks

WORDS = ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper",
         "kelp", "lotus", "maple", "nectar", "onyx", "pebble", "quartz", "raven", "sage", "tundra"]


def _heredoc(path: str, lines: list[str]) -> str:
    return f"cat > {path} <<'EOF'\n" + "\n".join(lines) + "\nEOF"


def _numeric_wrong(answer: int, rng: random.Random) -> list[str]:
    return [str(v) for v in dict.fromkeys([answer + 1, answer - 1, answer + rng.choice([7, 10, 12])])]


# each family: (rng, tag) → (instruction, setup, reveal command, answer, wrong answers, verifier mode)

def _count_words(rng: random.Random, tag: str) -> tuple:
    f = f"/workspace/{rng.choice(WORDS)}-{tag}.txt"
    lines = [" ".join(rng.choices(WORDS, k=rng.randint(3, 9))) for _ in range(rng.randint(8, 30))]
    n = sum(len(x.split()) for x in lines)
    return (f"How many words does {f} contain? Submit just the number.", _heredoc(f, lines),
            f"wc -w {f}", str(n), _numeric_wrong(n, rng), "numeric")


def _count_level(rng: random.Random, tag: str) -> tuple:
    f, level = f"/workspace/{rng.choice(WORDS)}-{tag}.log", rng.choice(["WARN", "DEBUG", "FATAL"])
    lines = [f"{i:03d} {rng.choice(['INFO', 'WARN', 'DEBUG', 'FATAL', 'INFO'])} job {i}"
             for i in range(1, rng.randint(30, 80))]
    n = sum(level in x for x in lines)
    return (f"How many lines of {f} have the level {level}? Submit just the number.", _heredoc(f, lines),
            f"grep -c {level} {f}", str(n), _numeric_wrong(n, rng), "numeric")


def _count_ext(rng: random.Random, tag: str) -> tuple:
    d, ext = f"/workspace/{rng.choice(WORDS)}-{tag}", rng.choice(["md", "sh", "cfg", "js"])
    files = [f"{sub}/{rng.choice(WORDS)}{i}.{rng.choice(['md', 'sh', 'cfg', 'js', 'txt'])}"
             for i, sub in enumerate(rng.choices(["a", "b", "a/c"], k=rng.randint(6, 14)))]
    n = sum(f.endswith("." + ext) for f in files)
    setup = f"mkdir -p {d}/a/c {d}/b && cd {d}\ntouch " + " ".join(files)
    return (f"How many files with names ending in .{ext} are under {d} (including subdirectories)? "
            "Submit just the number.", setup, f"find {d} -name '*.{ext}' | wc -l", str(n),
            _numeric_wrong(n, rng), "numeric")


def _by_size(largest: bool):
    def family(rng: random.Random, tag: str) -> tuple:
        d = f"/workspace/{rng.choice(WORDS)}-{tag}"
        n = rng.randint(3, 6)
        names, sizes = [f"{w}.dat" for w in rng.sample(WORDS, n)], rng.sample(range(300, 9000, 50), n)
        setup = f"mkdir -p {d} && cd {d}\n" + "\n".join(
            f"head -c {size} /dev/zero > {name}" for name, size in zip(names, sizes, strict=True))
        pick = (max if largest else min)(range(n), key=lambda i: sizes[i])
        return (f"Which file in {d} is the {'largest' if largest else 'smallest'} (in bytes)? Submit just its "
                "file name.", setup, f"ls {'-lS' if largest else '-lSr'} {d}", names[pick],
                [x for i, x in enumerate(names) if i != pick][:3], "exact")
    return family


def _extreme(largest: bool):
    def family(rng: random.Random, tag: str) -> tuple:
        f = f"/workspace/{rng.choice(WORDS)}-{tag}.txt"
        values = rng.sample(range(10, 999), rng.randint(15, 40))
        n = max(values) if largest else min(values)
        return (f"{f} has one integer per line. What is the {'largest' if largest else 'smallest'} of them? "
                "Submit just the number.", _heredoc(f, [str(v) for v in values]),
                f"sort -n {f} | {'tail' if largest else 'head'} -1", str(n), _numeric_wrong(n, rng), "numeric")
    return family


def _file_bytes(rng: random.Random, tag: str) -> tuple:
    f, n = f"/workspace/{rng.choice(WORDS)}-{tag}.bin", rng.randint(200, 20000)
    return (f"How many bytes does {f} have? Submit just the number.", f"head -c {n} /dev/zero > {f}",
            f"wc -c {f}", str(n), _numeric_wrong(n, rng), "numeric")


def _line_word(rng: random.Random, tag: str) -> tuple:
    f = f"/workspace/{rng.choice(WORDS)}-{tag}.txt"
    lines = [rng.choice(WORDS) for _ in range(rng.randint(10, 25))]
    k = rng.randint(2, len(lines))
    near = lines[k - 2:k - 1] + lines[k:k + 1] + rng.sample(WORDS, 3)
    wrong = [x for x in dict.fromkeys(near) if x != lines[k - 1]]
    return (f"What is the word on line {k} of {f}? Submit just the word.", _heredoc(f, lines),
            f"sed -n '{k}p' {f}", lines[k - 1], wrong[:3], "exact")


def _count_dirs(rng: random.Random, tag: str) -> tuple:
    d = f"/workspace/{rng.choice(WORDS)}-{tag}"
    subs = sorted({"/".join(rng.sample(WORDS, rng.randint(1, 2))) for _ in range(rng.randint(2, 6))})
    n = len({"/".join(s.split("/")[:i]) for s in subs for i in (1, 2) if len(s.split("/")) >= i})
    return (f"How many directories are inside {d}, at any depth (not counting {d} itself)? "
            "Submit just the number.", f"mkdir -p {d} && cd {d} && mkdir -p " + " ".join(subs),
            f"find {d} -mindepth 1 -type d | wc -l", str(n), _numeric_wrong(n, rng), "numeric")


def _distinct_lines(rng: random.Random, tag: str) -> tuple:
    f = f"/workspace/{rng.choice(WORDS)}-{tag}.txt"
    lines = rng.choices(WORDS[:rng.randint(5, 15)], k=rng.randint(15, 40))
    n = len(set(lines))
    return (f"How many distinct lines does {f} have? Submit just the number.", _heredoc(f, lines),
            f"sort -u {f} | wc -l", str(n), _numeric_wrong(n, rng), "numeric")


def _csv_price(rng: random.Random, tag: str) -> tuple:
    f, items = f"/workspace/{rng.choice(WORDS)}-{tag}.csv", rng.sample(WORDS, rng.randint(5, 10))
    prices = {i: rng.randint(3, 500) for i in items}
    item = rng.choice(items)
    return (f"{f} lists items and prices. What is the price of {item}? Submit just the number.",
            _heredoc(f, ["item,price"] + [f"{i},{p}" for i, p in prices.items()]),
            f"grep '^{item},' {f}", str(prices[item]), _numeric_wrong(prices[item], rng), "numeric")


PRM_FAMILIES = {"count-words": _count_words, "count-level": _count_level, "count-ext": _count_ext,
                "largest": _by_size(True), "smallest": _by_size(False), "max-value": _extreme(True),
                "min-value": _extreme(False), "file-bytes": _file_bytes, "line-word": _line_word,
                "count-dirs": _count_dirs, "distinct-lines": _distinct_lines, "csv-price": _csv_price}


def prm_tasks(split: str, per_family: int, seed: int) -> list[dict]:
    """Generated answer tasks for PRM training (`split` train) and recipe choices (`val`): many
    distinct files and answers, so a PRM cannot memorise them. None of the held-out builtin tasks'
    kinds (counting lines, finding a file by content, a JSON value, a sum) is among the families."""
    rng, rows = random.Random(f"{split}-{seed}"), []
    for family, make in PRM_FAMILIES.items():
        for k in range(per_family):
            instruction, setup, reveal, answer, wrong, mode = make(rng, f"{split}{k}")
            rows.append({"id": f"prm-{split}-{family}-{k}", "instruction": instruction, "setup": setup,
                         "answer": answer, "verifier": {"kind": "answer", "mode": mode},
                         "metadata": {"category": family, "reveal": reveal, "wrong": wrong}})
    return rows


# ------------------------------------------------------------------------------ stages

def rollouts(store, url: str, args) -> None:
    from agentrm.rollout.runner import run_rollouts
    from agentrm.tasks import bundled_tasks

    run_rollouts(bundled_tasks(), BuiltinSolver(args.seed), store, run_id="vq-builtin",
                 group_size=args.group_size, max_turns=5, concurrency=2)
    swe_runs(store, url, [f"vq-swe-{k}" for k in range(args.swe_group)], None, args.seed + 1)


def swe_runs(store, url: str, run_ids: list[str], instances: list[str] | None, seed: int) -> None:
    """SWE-bench agent runs (one rollout per instance each); the solver's seed differs per run."""
    pending = [r for r in run_ids if not store.finished_trajectory_ids(r)]
    if not pending:
        return
    import agentrm.rollout.policies as policies
    from agentrm.evals.swebench.harness import EvalConfig, Harness

    real = policies.make_policy
    try:
        for k, run_id in enumerate(pending):
            policies.make_policy = lambda spec=None, _s=seed + k, **kw: (
                SweSolver(_s) if spec == "bench:swe" else real(spec, **kw))
            # instance images kept between runs: after the harness removed them, this process
            # still took them for existing (the image builder's in-process cache) and every
            # later run ended in sandbox_error
            Harness(EvalConfig(agent=True, policy="bench:swe", run_id=run_id, db=url, max_turns=6,
                               max_workers=2, run_dir="runs/vq-swe", instance_ids=instances,
                               cache_level="instance")).run()
    finally:
        policies.make_policy = real


def training_rollouts(store, url: str, train_groups: set[str], args) -> list[str]:
    """More labelled data for the PRM only: `--train-group` extra rollouts of each training
    builtin task and `--train-swe-runs` extra agent runs on the training SWE instances (other
    seeds). Held-out tasks never get more rollouts, so the held-out set does not change."""
    from agentrm.rollout.runner import run_rollouts
    from agentrm.tasks import bundled_tasks

    runs = []
    if args.train_group:
        tasks = [t for t in bundled_tasks() if t.id in train_groups]
        run_rollouts(tasks, BuiltinSolver(args.seed + 10), store, run_id="vq-builtin-train",
                     group_size=args.train_group, max_turns=5, concurrency=2)
        runs.append("vq-builtin-train")
    swe = [f"vq-swe-train-{k}" for k in range(args.train_swe_runs)]
    swe_runs(store, url, swe, sorted(g for g in train_groups if g not in BUILTIN), args.seed + 100)
    return runs + swe


PRM_TASKS = Path(__file__).with_name("tasks")


def write_prm_tasks() -> None:
    """bench/tasks/prm_train.jsonl (4 instances per family) and prm_val.jsonl (1 per family)."""
    for split_name, per_family in (("train", 4), ("val", 1)):
        rows = prm_tasks(split_name, per_family, seed=0)
        (PRM_TASKS / f"prm_{split_name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def load_prm_tasks(split_name: str) -> list:
    from agentrm.tasks import load_tasks

    return load_tasks(PRM_TASKS / f"prm_{split_name}.jsonl")


def prm_rollouts(store, args) -> tuple[list, list]:
    """Rollouts of the generated tasks (`--prm-group` per task): training data for the PRM
    (prm_train) and a validation set for recipe choices (prm_val); never in the held-out set."""
    from agentrm.rollout.runner import run_rollouts

    if not args.prm_group:
        return [], []
    out = []
    for split_name in ("train", "val"):
        tasks, run_id = load_prm_tasks(split_name), f"vq-prm-{split_name}"
        run_rollouts(tasks, BuiltinSolver(args.seed + 20, tasks), store, run_id=run_id,
                     group_size=args.prm_group, max_turns=5, concurrency=2)
        out.append([t for t in store.iter_trajectories(run_id=run_id) if t.reward is not None])
    return out[0], out[1]

def split(trajs) -> tuple[set[str], set[str]]:
    """Half of each kind's tasks (sorted, alternating) for training; the other half held out.
    A group is a task: all rollouts of it, across runs (SWE agent runs hold one each)."""
    train, test = set(), set()
    for kind in ("builtin", "swe"):
        groups = sorted({t.task_id for t in trajs if _kind(t) == kind})
        for i, g in enumerate(groups):
            (train if i % 2 == 0 else test).add(g)
    return train, test


def _kind(t) -> str:
    return "swe" if (t.run_id or "").startswith("vq-swe") else "builtin"  # also vq-swe-train-*


def score(store, trajs, scorer, label: str) -> None:
    from agentrm.pipeline import default_context
    from agentrm.scoring import score_trajectories

    chash = scorer.config_hash()
    todo = [t for t in trajs if not any(s.scorer == scorer.name and s.config_hash == chash
                                        for s in store.get_scores([t.id]))]
    t0 = time.time()
    if todo:
        score_trajectories(todo, [scorer], store=store, batch_size=4, context=default_context(store))
    print(f"  {label}: scored {len(todo)} of {len(trajs)} in {time.time() - t0:.0f}s", flush=True)


def variant(args) -> str:
    """The trained PRM's tag (its directory and scorer name): how its backbone was trained, on
    what (-p: the generated tasks, G rollouts each) and with which labels (-soft: branch shares)."""
    how = f"lora{args.lora_rank}" if args.lora_rank else "full" if args.full_finetune else "head"
    tasks = f"-p{args.prm_group}" if args.prm_group else ""
    return f"{how}-k{args.branches}-n{args.train_group}{tasks}{'-soft' if args.soft_labels else ''}"


def train(store, trajs, train_groups, args) -> Path:
    from agentrm.training.prm_train import (
        PRMTrainConfig,
        labelled,
        labels_from_outcome,
        labels_from_progress,
        train_prm,
    )
    from agentrm.verifiers.progress import ProgressScorer

    out = Path(args.out) / f"prm-{variant(args)}"
    if (out / "training.json").is_file():
        return out
    chosen = [t for t in trajs if t.task_id in train_groups and t.reward is not None]
    builtin = [t for t in chosen if _kind(t) == "builtin"]
    prover_tasks = load_prm_tasks("train") if args.prm_group else []
    prover = ProgressScorer(branches=args.branches, prover_policy=BuiltinSolver(args.seed + 2, prover_tasks),
                            branch_turns=4, cache=str(Path(args.out) / f"progress-cache-k{args.branches}.json"))
    score(store, builtin, prover, f"Monte-Carlo branch values (K={args.branches})")
    chash = prover.config_hash()
    scores = [s for s in store.get_scores([t.id for t in builtin], scorer="progress") if s.config_hash == chash]
    labels = (labels_from_progress(scores, 0.5, soft=args.soft_labels)
              | labels_from_outcome([t for t in chosen if _kind(t) == "swe"], 1.0))
    items = [got for t in chosen if t.id in labels and (got := labelled(t, labels[t.id]))]
    t0 = time.time()
    head_only = not (args.full_finetune or args.lora_rank)
    epochs = args.epochs or (300 if head_only else 3)
    cfg = PRMTrainConfig(base="smollm2", labels="progress", epochs=epochs, lr=2e-4 if args.lora_rank else 2e-5,
                         head_lr=1e-3, batch_size=2, max_length=1024, freeze_backbone=head_only,
                         lora_rank=args.lora_rank, soft_labels=args.soft_labels)
    summary = train_prm(items, out, cfg)
    print(f"  trained PRM {variant(args)} on {summary['trajectories']} trajectories / {summary['steps']} steps "
          f"({summary['good_steps']} good) in {time.time() - t0:.0f}s; loss {summary['losses'][0]:.3f} → "
          f"{summary['losses'][-1]:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite:///runs/vq/vq.db")
    ap.add_argument("--out", default="runs/vq")
    ap.add_argument("--group-size", type=int, default=6)
    ap.add_argument("--swe-group", type=int, default=4)
    ap.add_argument("--branches", type=int, default=2)
    ap.add_argument("--train-group", type=int, default=0,
                    help="extra rollouts of each training builtin task, for the PRM only")
    ap.add_argument("--train-swe-runs", type=int, default=0,
                    help="extra agent runs on the training SWE instances, for the PRM only")
    ap.add_argument("--epochs", type=int, default=0,
                    help="head epochs (0: 300), or passes over the data with --lora-rank / --full-finetune (0: 3)")
    ap.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of this rank (0: head only)")
    ap.add_argument("--full-finetune", action="store_true", help="train the whole backbone (slow on a busy CPU)")
    ap.add_argument("--audit", type=int, default=12, help="trajectories in the audit")
    ap.add_argument("--folds", type=int, default=0, help="hybrid folds (0: leave one task out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prm-group", type=int, default=0,
                    help="rollouts of each generated task (bench/tasks/prm_*.jsonl) for PRM training and "
                         "validation (0: none)")
    ap.add_argument("--soft-labels", action="store_true", help="train on branch shares, not share ≥ 0.5")
    ap.add_argument("--prm-aggregate", default="mean", choices=["mean", "min", "last", "max"],
                    help="the trained PRM's trajectory value from its step scores (choose on prm_val)")
    ap.add_argument("--judge-aggregate", default="mean", choices=["mean", "min", "last", "max"])
    ap.add_argument("--no-info-gain", action="store_true", help="skip the information-gain scorer (slow)")
    ap.add_argument("--no-val-judge", action="store_true", help="validation: the trained PRM only")
    ap.add_argument("--write-prm-tasks", action="store_true", help="write bench/tasks/prm_*.jsonl and exit")
    ap.add_argument("--stop-after", choices=["rollouts", "train", "val", "score"], default=None)
    args = ap.parse_args()
    if args.write_prm_tasks:
        write_prm_tasks()
        return

    import torch

    from agentrm.traces import open_store
    from agentrm.verifiers.registry import make_scorer

    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    store = open_store(args.db)
    t0 = time.time()
    rollouts(store, args.db, args)
    runs = ["vq-builtin"] + [f"vq-swe-{k}" for k in range(args.swe_group)]
    trajs = [t for r in runs for t in store.iter_trajectories(run_id=r) if t.reward is not None]
    print(f"rollouts: {len(trajs)} labelled trajectories ({sum(t.reward >= 1 for t in trajs)} verified "
          f"successes) in {time.time() - t0:.0f}s", flush=True)
    if args.stop_after == "rollouts":
        return
    train_groups, test_groups = split(trajs)
    t0 = time.time()
    extra = training_rollouts(store, args.db, train_groups, args)
    extra_trajs = [t for r in extra for t in store.iter_trajectories(run_id=r) if t.reward is not None]
    if extra:
        print(f"training rollouts: {len(extra_trajs)} more on the training tasks "
              f"({sum(t.reward >= 1 for t in extra_trajs)} successes) in {time.time() - t0:.0f}s", flush=True)
    t0 = time.time()
    prm_train, prm_val = prm_rollouts(store, args)
    if prm_train:
        print(f"generated tasks: {len(prm_train)} training / {len(prm_val)} validation rollouts "
              f"({sum(t.reward >= 1 for t in prm_train)} / {sum(t.reward >= 1 for t in prm_val)} successes) "
              f"in {time.time() - t0:.0f}s", flush=True)
    prm_dir = train(store, trajs + extra_trajs + prm_train, train_groups | {t.task_id for t in prm_train}, args)
    if args.stop_after == "train":
        return
    test = [t for t in trajs if t.task_id in test_groups]
    from agentrm.verifiers.prm import make_scorer as make_prm

    judge = make_prm(model="smollm2", style="judge", name="judge", aggregate="mean")
    trained = make_prm(model=str(prm_dir), style="token-cls", name=f"prm-{variant(args)}", aggregate="mean")
    if prm_val:
        validate(store, prm_val, judge, trained, args)
    if args.stop_after == "val":
        return
    score(store, test, judge, "SmolLM2 judge")
    score(store, test, trained, "trained PRM")
    if not args.no_info_gain:
        score(store, [t for t in test if _kind(t) == "builtin"], make_scorer("info-gain"), "information gain")
    if args.stop_after == "score":
        return
    report(store, test, trained, judge, args)


AGGREGATES = ("mean", "min", "last", "max")


def validate(store, val, judge, trained, args) -> None:
    """The validation tasks (prm_val: generated, never trained on, not held out): each scorer's
    AUC / within-group AUC per step aggregate. Recipe choices (--prm-aggregate, --judge-aggregate,
    which variant) are made here, never on the held-out set."""
    from agentrm.evaluation.verifier_eval import EvalConfig, evaluate

    score(store, val, trained, "validation: trained PRM")
    if not args.no_val_judge:
        score(store, val, judge, "validation: SmolLM2 judge")
    ids = {t.id for t in val}
    rows = [s for s in store.get_scores(list(ids)) if s.level.value == "turn"]  # step scores only
    names = [trained.name] + ([] if args.no_val_judge else ["judge"])
    out = {}
    print(f"\n[validation] {len(val)} trajectories of {len({t.task_id for t in val})} generated tasks "
          f"({sum(t.reward >= 1 for t in val)} successes)")
    print(f"{'scorer':<34}{'AUC':>8}{'gAUC':>8}{'BoN@4':>8}")
    for name in names:
        for how in AGGREGATES:
            res = evaluate(val, rows, EvalConfig(scorers=[name], ns=[4], group_by="task", hybrid=None,
                                                 aggregate={name: how}))["scorers"][0]
            out[f"{name}/{how}"] = res
            print(f"{name + '/' + how:<34}{_f(res['auc'])}{_f(res['group_auc'])}"
                  f"{_f(res['best_of_n'][0]['accuracy'] if res['best_of_n'] else None)}")
    (Path(args.out) / f"validation-{variant(args)}.json").write_text(json.dumps(out, indent=2, default=str))


def aggregated(scores, name: str, how: str) -> list:
    """`name`'s rows with its trajectory rows dropped when another step aggregate is asked for
    (the evaluation then aggregates the step rows)."""
    if how == "mean":
        return list(scores)
    return [s for s in scores if not (s.scorer == name and s.level.value == "trajectory")]


def report(store, test, trained, judge, args) -> None:
    from agentrm.evaluation.audit import AuditConfig, audit
    from agentrm.evaluation.report import write_html
    from agentrm.evaluation.verifier_eval import EvalConfig, evaluate
    from agentrm.protocols import ScoringContext
    from agentrm.types import Score, ScoreLevel
    from agentrm.verifiers.registry import make_scorer

    scores = aggregated(aggregated(store.get_scores([t.id for t in test]), trained.name, args.prm_aggregate),
                        "judge", args.judge_aggregate)
    how = {trained.name: args.prm_aggregate, "judge": args.judge_aggregate}
    # a pattern baseline (always compare against one): more turns = looked before answering
    turns = [Score("turns", t.id, float(len(t.turns)), ScoreLevel.TRAJECTORY, config_hash="bench") for t in test]
    print(f"\nheld-out: {len(test)} trajectories of {len({t.task_id for t in test})} tasks "
          f"({sum(t.reward >= 1 for t in test)} successes)")
    out: dict[str, Any] = {}
    for name, subset, scorers in [
        ("all", test, ["judge", trained.name]),
        ("builtin", [t for t in test if _kind(t) == "builtin"],
         ["judge", trained.name] + ([] if args.no_info_gain else ["info-gain"])),
        ("swe", [t for t in test if _kind(t) == "swe"], ["tests", "judge", trained.name]),
    ]:
        ids = {t.id for t in subset}
        res = evaluate(subset, [s for s in scores if s.trajectory_id in ids],
                       EvalConfig(scorers=scorers, ns=list(range(1, 9)), group_by="task",
                                  folds=args.folds or len({t.task_id for t in subset}), aggregate=how))
        base = evaluate(subset, [s for s in turns if s.trajectory_id in ids],
                        EvalConfig(scorers=["turns"], ns=list(range(1, 9)), group_by="task", hybrid=None,
                                   folds=2))
        res["baseline"] = base["scorers"][0] | {"name": "turns (baseline)"}
        out[name] = res
        write_html(res, Path(args.out) / f"verifier-quality-{name}.html", f"Verifier quality ({name})")
        print(f"\n[{name}] {res['labels']['trajectories']} trajectories, {res['labels']['groups']} groups")
        print(f"{'scorer':<22}{'n':>4}{'AUC':>8}{'gAUC':>8}{'ECE':>8}{'BoN@4':>8}{'orc@4':>8}")
        for s in [res["baseline"]] + res["scorers"] + [_hybrid_row(res)]:
            if s is None:
                continue
            bon = next((r for r in s["best_of_n"] if r["n"] == 4), {})
            print(f"{s['name']:<22}{s['n']:>4}{_f(s['auc'])}{_f(s.get('group_auc'))}{_f(s.get('ece'))}"
                  f"{_f(bon.get('accuracy'))}{_f(bon.get('oracle'))}")
        if (res.get("hybrid") or {}).get("chosen"):
            print(f"  hybrid's choice per held-out task: {', '.join(res['hybrid']['chosen'])}")
    (Path(args.out) / "verifier-quality.json").write_text(json.dumps(out, indent=2, default=str))
    if not args.audit:
        return
    half = args.audit // 2
    sample = ([t for t in test if _kind(t) == "builtin"][:half]
              + [t for t in test if _kind(t) == "swe"][:args.audit - half])
    t0 = time.time()
    rep = audit(sample, [make_scorer("answer"), judge, trained], AuditConfig(),
                ScoringContext(store=store))
    print(f"\naudit: {len(sample)} trajectories, {time.time() - t0:.0f}s; applied {rep['applied']}")
    for entry in rep["scorers"]:
        print(f"{entry['name']}: " + "; ".join(
            f"{p} {_f(s['mean_shift'], 1).strip()} (above {_f(s['above'], 1).strip()})"
            for p, s in entry["perturbations"].items()))
        pad = entry["padding"] or {}
        print(f"  padding flagged: {pad.get('flagged')}; neutralised by {pad.get('neutralised_by')}")
    (Path(args.out) / "verifier-quality-audit.json").write_text(json.dumps(rep, indent=2, default=str))


def _hybrid_row(res) -> dict | None:
    h = res.get("hybrid") or {}
    if not h.get("best_of_n"):
        return None
    return {"name": "hybrid (held out)", "n": h["n"], "auc": h.get("auc"), "group_auc": h.get("group_auc"),
            "ece": None, "best_of_n": h["best_of_n"]["hybrid"]}


def _f(v, width: int = 8) -> str:
    return f"{'—':>{width}}" if v is None else f"{v:>{width}.3f}"


if __name__ == "__main__":
    main()
