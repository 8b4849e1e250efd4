"""The TRL peer row of make bench (bench/trl_grpo.sh runs this under the --ref venv /opt/leash-hf5).

usage: trl_grpo.py bench LEASH MODEL_DIR PROMPTS.jsonl ROUNDS STEPS BATCH GROUP MAX_NEW LR WORK_DIR
       trl_grpo.py trl MODEL_DIR PROMPTS.jsonl STEPS BATCH GROUP MAX_NEW LR OUT_DIR   (one TRL run; what bench runs)

GRPO on the same model directory (written by leash, Hugging Face layout), the same prompts and the same reward
(bench/trl_reward.py: TRL calls it in-process, leash runs it as a --reward-cmd scorer, so the command's pipe
and process are in leash's time) with TRL 1.16's GRPOTrainer and with `leash grpo`: BATCH prompts x GROUP
responses of up to MAX_NEW tokens (both stop a response at EOS), temperature 1, no top-k/top-p, one update
per step over the whole batch (TRL: num_iterations 1, gradient_accumulation_steps 1; leash: --epochs 1, no
--minibatch), beta 0.04 with k3 in the loss, loss "grpo" (each response's token mean), rewards scaled by the
group's std, clip 0.2, gradient clip 1, AdamW at LR, constant, no weight decay, F32, 2 threads each, no
activation checkpointing (TRL's GRPOConfig turns it on by default: off here, as leash runs without
--checkpoint-activations).

bench runs ROUNDS rounds, each one leash run and one TRL run (the order alternating), each in its own
process: a run's first step is the warm-up and is dropped; seconds per step are the median of the other
steps over all rounds (leash: metrics.jsonl's time/step_s; TRL: wall time between the ends of its steps),
response tokens per step the mean, peak RSS the most over the runs (wait4's ru_maxrss of each process).
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_trl(model, prompts, steps, batch, group, max_new, lr, out):
    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    sys.path.insert(0, HERE)
    from trl_reward import reward

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    def reward_func(completions, **_):
        return [reward(c) for c in completions]

    class Clock(TrainerCallback):  # wall time between the ends of steps, response tokens per step
        def __init__(self):
            self.t, self.s, self.tok = None, [], []

        def on_train_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            self.s.append(now - self.t)
            self.t = now

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                self.tok.append(logs["completions/mean_length"] * batch * group)

    cfg = GRPOConfig(output_dir=out, per_device_train_batch_size=batch * group, num_generations=group,
                     gradient_accumulation_steps=1, num_iterations=1, max_completion_length=max_new,
                     temperature=1.0, top_p=1.0, top_k=0, beta=0.04, loss_type="grpo", scale_rewards="group",
                     epsilon=0.2, max_grad_norm=1.0, learning_rate=lr, lr_scheduler_type="constant",
                     warmup_steps=0, weight_decay=0.0, max_steps=steps, logging_steps=1, report_to="none",
                     save_strategy="no", bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
                     seed=0, disable_tqdm=True,
                     model_init_kwargs={"dtype": torch.float32})
    clock = Clock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward_func, args=cfg,
                          train_dataset=load_dataset("json", data_files=prompts, split="train"),
                          processing_class=AutoTokenizer.from_pretrained(model), callbacks=[clock])
    trainer.train()
    print("RESULT", json.dumps({"step_s": clock.s, "tokens": clock.tok}))


def timed(cmd, log, env):
    """Runs cmd with stdout and stderr to log; returns its peak RSS in bytes (fails on a nonzero exit)."""
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"trl_grpo.py: {cmd[0]} {cmd[1]} failed (exit {os.waitstatus_to_exitcode(status)}); its log:\n"
                 + open(log).read()[-3000:])
    return ru.ru_maxrss * 1024


def bench(leash, model, prompts, rounds, steps, batch, group, max_new, lr, work):
    env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    n = dict(batch=batch, group=group, max_new=max_new, lr=lr)
    res = {k: {"s": [], "tok": [], "rss": 0} for k in ("leash", "TRL")}
    for r in range(rounds):
        for who in (("leash", "TRL") if r % 2 == 0 else ("TRL", "leash")):
            out = os.path.join(work, f"{who}-{r}")
            if who == "leash":
                rss = timed([leash, "grpo", "--policy", model, "--reward-cmd", f"python3 {HERE}/trl_reward.py",
                             "--prompts", prompts, "--steps", str(steps), "--batch", str(batch), "--group",
                             str(group), "--max-new", str(max_new), "--temperature", "1", "--beta", "0.04",
                             "--kl-estimator", "k3", "--lr", str(lr), "--out", out, "--overwrite", "-q"],
                            out + ".log", env)
                m = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
                s = [x["time/step_s"] for x in m]
                tok = [x["completions/mean_length"] * batch * group for x in m]
            else:
                rss = timed([sys.executable, os.path.abspath(__file__), "trl", model, prompts, str(steps),
                             str(batch), str(group), str(max_new), str(lr), out], out + ".log", env)
                line = [x for x in open(out + ".log") if x.startswith("RESULT ")][-1]
                d = json.loads(line[7:])
                s, tok = d["step_s"], d["tokens"]
            res[who]["s"] += s[1:]
            res[who]["tok"] += tok[1:]
            res[who]["rss"] = max(res[who]["rss"], rss)
            print(f"  round {r + 1} {who:5s} s/step " + " ".join(f"{x:.3f}" for x in s)
                  + f" (first dropped)  peak RSS {rss / 2**20:.0f} MiB", flush=True)
    load = open("/proc/loadavg").read().split()[:3]
    c = json.load(open(os.path.join(model, "config.json")))
    print(f"model: {c['model_type']}, {c.get('n_layer', c.get('num_hidden_layers'))} layers, width "
          f"{c.get('n_embd', c.get('hidden_size'))}, vocabulary {c['vocab_size']}")
    print(f"GRPO, {batch} prompts x {group} = {batch * group} responses of up to {max_new} tokens, beta 0.04 k3, "
          f"lr {lr}, 2 threads each, OMP_WAIT_POLICY=PASSIVE, {rounds} interleaved rounds x {steps - 1} timed "
          f"steps (load average: {' '.join(load)})")
    print(f"{'trainer':8s} {'s/step':>8s} {'min':>8s} {'tok/step':>9s} {'tok/s':>8s} {'peak RSS':>10s}")
    med = {}
    for who, d in res.items():
        med[who] = statistics.median(d["s"])
        tok = statistics.mean(d["tok"]) if d["tok"] else float("nan")
        print(f"{who:8s} {med[who]:8.3f} {min(d['s']):8.3f} {tok:9.1f} {tok / med[who]:8.1f} "
              f"{d['rss'] / 2**30:8.2f} GB")
    print(f"leash / TRL speed: {med['TRL'] / med['leash']:.2f}x (median s/step), peak RSS leash / TRL: "
          f"{res['leash']['rss'] / res['TRL']['rss']:.2f} (leash's time includes its --reward-cmd scorer's pipe)")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "trl" and len(a) == 9:
        run_trl(a[1], a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]), float(a[7]), a[8])
    elif a and a[0] == "bench" and len(a) == 11:
        bench(a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6]), int(a[7]), int(a[8]), float(a[9]), a[10])
    else:
        sys.exit(__doc__)
