"""LoRA fine-tuning of a GGUF chat model on the CPU, run as a process of its own.

The base model's GGUF is loaded into PyTorch by transformers (which
dequantizes it), peft wraps its linear layers with low-rank adapters, and a
plain training loop fits them with the loss on the assistant's tokens only
(``supervised``) or on the preference margin between a preferred and a
non-preferred answer (``dpo``, against the frozen base as reference). At
the end of each epoch the adapter is written as a llama.cpp LoRA GGUF
(``adapter.gguf`` beside its resumable state), which llama.cpp applies to
the very quantized base it was trained from; the base is never re-quantized.

``python -m hearth.engines.training SPEC.json`` runs one job and reports on
stdout, one JSON object a line: ``loaded``, one ``step`` per optimizer step
(its metrics), ``checkpoint`` per epoch, then ``done`` (or ``error``). The
job runner above reads these lines; killing the process is how a job is
cancelled, and a new process started with the same spec resumes from the
last checkpoint's state.

Importing this module does not import torch; only running a job does.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Example", "TrainingSpec", "render_example", "run", "write_lora_gguf"]

# peft's module names and llama.cpp's tensor names for the same linear layers.
_GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# The classic LoRA targets: the query and value projections. llama.cpp applies an adapter as
# extra matmuls per adapted projection at every token; on these two the fine-tuned model keeps
# about 0.93 of its base's speed (all seven projections: about 0.66; see docs/benchmarks.md).
TARGET_MODULES = ["q_proj", "v_proj"]
# The architectures whose GGUF q/k rows llama.cpp's converter permutes (rotary halves interleaved).
_PERMUTED_QK = {"llama"}

# Names the pid of the process that started this one (see _die_with_parent).
PARENT_ENV = "HEARTH_TRAINING_PARENT"

Example = dict[str, Any]
Emit = Callable[[dict[str, Any]], None]


@dataclass
class TrainingSpec:
    """Everything one run needs; written as JSON for the training process."""

    base_gguf: str
    work_dir: str
    training_file: str  # JSONL, already validated
    validation_file: str | None = None
    method: str = "supervised"  # or "dpo"
    n_epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 1e-3
    beta: float = 0.1  # DPO
    rank: int = 16
    alpha: float = 32.0
    seed: int = 0
    threads: int = 0
    max_tokens: int = 2048
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> TrainingSpec:
        return cls(**json.loads(path.read_text()))


# -- examples as token ids ----------------------------------------------------------


def render_example(tokenizer: Any, messages: Sequence[dict[str, Any]],
                   weights: Sequence[bool] | None = None) -> tuple[list[int], list[int]]:
    """Token ids of a chat and its labels: the assistant turns' ids, -100 elsewhere.

    The chat template is rendered one message at a time, so each message's text
    (and its closing tokens) is known; an assistant message with ``weight`` 0
    is context, not a target.
    """
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for index, message in enumerate(messages):
        upto = [_plain(m) for m in messages[: index + 1]]
        if message["role"] == "assistant":
            prompt = _template(tokenizer, upto[:-1], generation_prompt=True)
            _extend(tokenizer, ids, labels, prompt[len(rendered):], learn=False)
            full = _template(tokenizer, upto, generation_prompt=False)
            learn = message.get("weight", 1) != 0 if weights is None else weights[index]
            _extend(tokenizer, ids, labels, full[len(prompt):], learn=learn)
            rendered = full
        else:
            full = _template(tokenizer, upto, generation_prompt=False)
            _extend(tokenizer, ids, labels, full[len(rendered):], learn=False)
            rendered = full
    return ids, labels


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return {"role": message["role"], "content": content or ""}


def _template(tokenizer: Any, messages: list[dict[str, Any]], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt))


def _extend(tokenizer: Any, ids: list[int], labels: list[int], text: str, *, learn: bool) -> None:
    if not text:
        return
    piece = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids.extend(piece)
    labels.extend(piece if learn else [-100] * len(piece))


def _preference(tokenizer: Any, example: Example) -> tuple[tuple[list[int], list[int]],
                                                              tuple[list[int], list[int]]]:
    """A DPO example's chosen and rejected chats, each scored on its final answer only."""
    prompt = list(example["input"]["messages"])
    chosen = prompt + list(example["preferred_output"])
    rejected = prompt + list(example["non_preferred_output"])
    mask = [False] * len(prompt)
    return (render_example(tokenizer, chosen, mask + [True] * len(example["preferred_output"])),
            render_example(tokenizer, rejected, mask + [True] * len(example["non_preferred_output"])))


# -- the adapter as a llama.cpp LoRA GGUF ---------------------------------------------


def _permute_rows(weights: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order for llama models: each head's rotary halves interleaved."""
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_lora_gguf(path: Path, tensors: dict[str, tuple[Any, Any]], *, architecture: str,
                    alpha: float, n_head: int, n_head_kv: int) -> None:
    """Write ``{hf module path: (A, B)}`` (numpy float32) as a llama.cpp adapter.

    Tensor names follow the base GGUF (``blk.N.attn_q.weight.lora_a``); for
    architectures whose converter permutes q and k, B's rows get the same
    permutation (A acts on the input side, which the permutation leaves alone).
    """
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for module, (lora_a, lora_b) in sorted(tensors.items(), key=lambda item: _layer_order(item[0])):
        layer, name = _gguf_name(module)
        if architecture in _PERMUTED_QK and name in ("attn_q", "attn_k"):
            lora_b = _permute_rows(lora_b, n_head if name == "attn_q" else n_head_kv)
        base = f"blk.{layer}.{name}.weight"
        writer.add_tensor(f"{base}.lora_a", np.ascontiguousarray(lora_a, dtype=np.float32))
        writer.add_tensor(f"{base}.lora_b", np.ascontiguousarray(lora_b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _gguf_name(module: str) -> tuple[int, str]:
    # ".../layers.7.self_attn.q_proj" -> (7, "attn_q")
    head, _, rest = module.partition("layers.")
    layer, _, path = rest.partition(".")
    if not head or path not in _GGUF_NAMES:
        raise ValueError(f"no llama.cpp tensor for module {module}")
    return int(layer), _GGUF_NAMES[path]


def _layer_order(module: str) -> tuple[int, str]:
    return _gguf_name(module)


# -- the run ----------------------------------------------------------------------------


def _read_jsonl(path: str | None) -> list[Example]:
    if path is None:
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _gguf_architecture(path: str) -> tuple[str, int, int]:
    import gguf

    reader = gguf.GGUFReader(path)

    def field_value(key: str) -> Any:
        found = reader.get_field(key)
        if found is None:
            return None
        return found.contents()

    arch = str(field_value("general.architecture"))
    n_head = int(field_value(f"{arch}.attention.head_count"))
    kv = field_value(f"{arch}.attention.head_count_kv")
    return arch, n_head, int(kv) if kv is not None else n_head


class _Run:
    """One training run in this process; ``emit`` reports progress."""

    def __init__(self, spec: TrainingSpec, emit: Emit) -> None:
        import torch

        self.spec = spec
        self.emit = emit
        self.torch = torch
        self.work = Path(spec.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        if spec.threads:
            torch.set_num_threads(spec.threads)
        random.seed(spec.seed)
        torch.manual_seed(spec.seed)

    def load(self) -> None:
        import logging

        import transformers
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        base = Path(self.spec.base_gguf)
        self.architecture, self.n_head, self.n_head_kv = _gguf_architecture(str(base))
        self.tokenizer = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
        model = AutoModelForCausalLM.from_pretrained(str(base.parent), gguf_file=base.name,
                                                     dtype=self.torch.float32)
        model.config.use_cache = False
        config = LoraConfig(r=self.spec.rank, lora_alpha=int(self.spec.alpha), lora_dropout=0.0,
                            target_modules=TARGET_MODULES, bias="none", task_type="CAUSAL_LM")
        self.model = get_peft_model(model, config)
        self.train_set = self._encode(_read_jsonl(self.spec.training_file))
        self.valid_set = self._encode(_read_jsonl(self.spec.validation_file))
        self.optimizer = self.torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=self.spec.learning_rate,
            weight_decay=0.0)
        self.steps_per_epoch = math.ceil(len(self.train_set) / self.spec.batch_size)
        self.total_steps = self.steps_per_epoch * self.spec.n_epochs

    def _encode(self, examples: list[Example]) -> list[Any]:
        if self.spec.method == "dpo":
            return [_preference(self.tokenizer, example) for example in examples]
        return [render_example(self.tokenizer, example["messages"]) for example in examples]

    # -- batches and losses

    def _pad(self, items: Sequence[tuple[list[int], list[int]]]) -> tuple[Any, Any, Any]:
        torch = self.torch
        width = min(max(len(ids) for ids, _ in items), self.spec.max_tokens)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        labels = torch.full((len(items), width), -100, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (tokens, targets) in enumerate(items):
            tokens, targets = tokens[:width], targets[:width]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            labels[row, : len(targets)] = torch.tensor(targets)
            mask[row, : len(tokens)] = 1
        return ids, labels, mask

    def _token_logprobs(self, items: Sequence[tuple[list[int], list[int]]]) -> tuple[Any, Any, Any]:
        """Per-token log-probabilities of the labels, their mask, and argmax hits."""
        ids, labels, mask = self._pad(items)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100
        safe = targets.clamp(min=0)
        logprobs = logits.log_softmax(-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        hits = (logits.argmax(-1) == targets) & keep
        return logprobs, keep, hits

    def _supervised(self, batch: Sequence[Any]) -> tuple[Any, float, int]:
        logprobs, keep, hits = self._token_logprobs(batch)
        count = int(keep.sum())
        loss = -(logprobs * keep).sum() / max(count, 1)
        return loss, float(hits.sum()) / max(count, 1), count

    def _dpo(self, batch: Sequence[Any]) -> tuple[Any, float, int]:
        torch = self.torch
        pairs = [item for pair in batch for item in pair]

        def sums() -> tuple[Any, Any]:
            logprobs, keep, _ = self._token_logprobs(pairs)
            return (logprobs * keep).sum(-1), keep.sum(-1)

        policy, counts = sums()
        with torch.no_grad(), self.model.disable_adapter():
            reference, _ = sums()
        chosen = policy[0::2] - reference[0::2]
        rejected = policy[1::2] - reference[1::2]
        margin = self.spec.beta * (chosen - rejected)
        # The preference loss, plus the preferred answers' own negative log-likelihood per token:
        # without it DPO may widen the margin by making both answers unlikely (the model drifts
        # into text neither answer has); with it the preferred answer itself becomes likely.
        preferred_nll = (-policy[0::2] / counts[0::2].clamp(min=1)).mean()
        loss = -torch.nn.functional.logsigmoid(margin).mean() + preferred_nll
        accuracy = float((margin > 0).float().mean())
        tokens = sum(sum(1 for label in labels if label != -100) for _, labels in pairs)
        return loss, accuracy, tokens

    def _loss(self, batch: Sequence[Any]) -> tuple[Any, float, int]:
        return self._dpo(batch) if self.spec.method == "dpo" else self._supervised(batch)

    def _validate(self, items: Sequence[Any]) -> tuple[float, float]:
        with self.torch.no_grad():
            losses, accuracies = [], []
            for start in range(0, len(items), self.spec.batch_size):
                loss, accuracy, _ = self._loss(items[start: start + self.spec.batch_size])
                losses.append(loss.item())
                accuracies.append(accuracy)
        return sum(losses) / len(losses), sum(accuracies) / len(accuracies)

    # -- state

    def _lora_tensors(self) -> dict[str, tuple[Any, Any]]:
        found: dict[str, tuple[Any, Any]] = {}
        for name, module in self.model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                lora_a = module.lora_A["default"].weight.detach().float().numpy()
                lora_b = module.lora_B["default"].weight.detach().float().numpy()
                found[name.removeprefix("base_model.model.")] = (lora_a, lora_b)
        return found

    def _checkpoint(self, step: int, epoch: int, metrics: dict[str, Any]) -> Path:
        directory = self.work / f"ckpt-step-{step}"
        directory.mkdir(parents=True, exist_ok=True)
        write_lora_gguf(directory / "adapter.gguf.tmp", self._lora_tensors(),
                        architecture=self.architecture, alpha=self.spec.alpha,
                        n_head=self.n_head, n_head_kv=self.n_head_kv)
        os.replace(directory / "adapter.gguf.tmp", directory / "adapter.gguf")
        trainable = {name: value for name, value in self.model.state_dict().items() if "lora_" in name}
        self.torch.save({"lora": trainable, "optimizer": self.optimizer.state_dict(), "step": step,
                         "epoch": epoch, "metrics": metrics, "tokens": self.trained_tokens},
                        directory / "state.pt.tmp")
        os.replace(directory / "state.pt.tmp", directory / "state.pt")
        (self.work / "latest").write_text(directory.name)
        return directory

    def _resume(self) -> tuple[int, int]:
        """The epoch and step to go on from (0, 0 for a fresh start)."""
        latest = self.work / "latest"
        if not latest.exists():
            return 0, 0
        state = self.torch.load(self.work / latest.read_text().strip() / "state.pt",
                                weights_only=False)
        self.model.load_state_dict(state["lora"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.trained_tokens = int(state["tokens"])
        return int(state["epoch"]), int(state["step"])

    # -- the loop

    def train(self) -> None:
        torch = self.torch
        self.trained_tokens = 0
        epoch, step = self._resume()
        self.emit({"event": "loaded", "examples": len(self.train_set), "total_steps": self.total_steps,
                   "steps_per_epoch": self.steps_per_epoch, "resumed_from_step": step})
        self.model.train()
        last: dict[str, Any] = {}
        while epoch < self.spec.n_epochs:
            order = list(range(len(self.train_set)))
            random.Random(self.spec.seed * 1000 + epoch).shuffle(order)
            for start in range(0, len(order), self.spec.batch_size):
                started = time.perf_counter()
                batch = [self.train_set[i] for i in order[start: start + self.spec.batch_size]]
                loss, accuracy, tokens = self._loss(batch)
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad], 1.0)
                self.optimizer.step()
                step += 1
                self.trained_tokens += sum(len(ids) for ids, _ in _flat(batch))
                last = {"step": step, "train_loss": loss.item(), "train_mean_token_accuracy": accuracy,
                        "learned_tokens": tokens}
                if self.valid_set:
                    pick = [self.valid_set[(step - 1) * self.spec.batch_size % len(self.valid_set)]]
                    self.model.eval()
                    last["valid_loss"], last["valid_mean_token_accuracy"] = self._validate(pick)
                    self.model.train()
                last["seconds"] = time.perf_counter() - started
                last["trained_tokens"] = self.trained_tokens
                self.emit({"event": "step", "total_steps": self.total_steps, **last})
            epoch += 1
            metrics = dict(last)
            if self.valid_set:
                self.model.eval()
                metrics["full_valid_loss"], metrics["full_valid_mean_token_accuracy"] = \
                    self._validate(self.valid_set)
                self.model.train()
            directory = self._checkpoint(step, epoch, metrics)
            self.emit({"event": "checkpoint", "step": step, "epoch": epoch, "metrics": metrics,
                       "adapter": str(directory / "adapter.gguf")})
        latest = (self.work / "latest").read_text().strip()
        self.emit({"event": "done", "adapter": str(self.work / latest / "adapter.gguf"),
                   "trained_tokens": self.trained_tokens, "step": step})


def _flat(batch: Sequence[Any]) -> Iterator[tuple[list[int], list[int]]]:
    for item in batch:
        if isinstance(item[0], tuple):  # a DPO pair
            yield from item
        else:
            yield item


def run(spec: TrainingSpec, emit: Emit) -> None:
    """Train per ``spec`` in this process, reporting through ``emit``."""
    job = _Run(spec, emit)
    job.load()
    job.train()


def _emit_line(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """Be killed when the process that started this one dies (Linux), so no trainer is orphaned."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # it died before the request took hold
        sys.exit(1)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m hearth.engines.training SPEC.json\n")
        return 2
    _die_with_parent()
    try:
        run(TrainingSpec.load(Path(argv[0])), _emit_line)
    except Exception as exc:  # reported to the job runner, which words it for the API
        _emit_line({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
