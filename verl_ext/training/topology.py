"""The configuration checked against the world size it names, before Ray starts anything.

verl asserts most of what several ranks need only when the first step reaches it: the batch must split into equal
chunks per rank (``chunk_tensordict``), the update into whole mini-batches per rank (``train_mini_batch``,
``make_iterator``), fixed micro-batches must divide them (``prepare_micro_batches``), a dynamic micro-batch must
hold the longest row (``rearrange_micro_batches``), the full path's generation batch must split over the agent-loop
workers (``DataProto.chunk``), and verl's own group balancing (``use_prefix_grouper``) needs the number of groups to
be a multiple of the ranks. A run on an 8-GPU node then stops after its first rollout. :func:`check_topology`
evaluates every such invariant from the config alone and reports all violations at once, each naming the settings
involved; the trainer calls it in ``RayRPOTrainer.__init__`` and ``scripts/repro/compose.py`` in a dry run.

It also runs the recipe's own rank balancing (``shared_prefix.rank_balance``) on a batch of the first step's shape,
so that a balancing that cannot deal the configured groups to the configured ranks fails here and not at step 1.
What only lowers the sharing (a token budget too small for a whole packed group) is a warning, not an error.

Rules are registered in :data:`RULES` (name -> function of a :class:`Topology`), as verl registers its
advantage estimators; plain Python on an OmegaConf config, no verl or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from verl_ext.shared_prefix.rank_balance import GROUPS_ANY_COUNT, VERL_GROUPS, assign_groups_to_ranks, rank_balancing


class TopologyError(ValueError):
    """The configuration cannot run on the world size it names; the message lists every reason."""


@dataclass(frozen=True)
class PassKeys:
    """Where a training pass's micro-batching lives under ``actor_rollout_ref``."""

    role: str
    dynamic: str
    budget: str
    micro: str


PASS_KEYS = {
    "update": PassKeys("actor", "actor.use_dynamic_bsz", "actor.ppo_max_token_len_per_gpu",
                       "actor.ppo_micro_batch_size_per_gpu"),
    "old_log_prob": PassKeys("actor", "rollout.log_prob_use_dynamic_bsz", "rollout.log_prob_max_token_len_per_gpu",
                             "rollout.log_prob_micro_batch_size_per_gpu"),
    "ref": PassKeys("ref", "ref.log_prob_use_dynamic_bsz", "ref.log_prob_max_token_len_per_gpu",
                    "ref.log_prob_micro_batch_size_per_gpu"),
}


@dataclass(frozen=True)
class Topology:
    """What the rules read: the config and the sizes derived from it."""

    config: Any

    def get(self, dotted: str, default: Any = None) -> Any:
        value = OmegaConf.select(self.config, dotted, default=default)
        return default if value is None else value

    @property
    def world(self) -> int:
        return int(self.get("trainer.n_gpus_per_node", 1)) * int(self.get("trainer.nnodes", 1))

    def sp(self, role: str) -> int:
        return int(self.get(f"actor_rollout_ref.{role}.ulysses_sequence_parallel_size", 1))

    def dp(self, role: str) -> int:
        """Data-parallel ranks of the actor or reference model: the world over sequence parallelism (FSDP) or over
        tensor x pipeline x context parallelism (Megatron, as verl's ``validate_config`` counts them)."""
        section = f"actor_rollout_ref.{role}"
        if self.get(f"{section}.strategy") == "megatron":
            model_parallel = (int(self.get(f"{section}.megatron.tensor_model_parallel_size", 1))
                              * int(self.get(f"{section}.megatron.pipeline_model_parallel_size", 1))
                              * int(self.get(f"{section}.megatron.context_parallel_size", 1)))
            return max(self.world // model_parallel, 1)
        return max(self.world // self.sp(role), 1)

    @property
    def group_size(self) -> int:
        return int(self.get("actor_rollout_ref.rollout.n", 1))

    @property
    def train_prompts(self) -> int:
        return int(self.get("data.train_batch_size"))

    @property
    def train_rows(self) -> int:
        return self.train_prompts * self.group_size

    @property
    def shared_prefix(self) -> bool:
        return bool(self.get("rpo.shared_prefix", False))

    @property
    def max_row_tokens(self) -> int:
        return int(self.get("data.max_prompt_length")) + int(self.get("data.max_response_length"))

    def passes(self) -> dict[str, tuple[str, bool, Optional[int], Optional[int]]]:
        """Per training pass: (role, dynamic batch size, token budget per GPU, fixed micro-batch size per GPU)."""
        prefix = "actor_rollout_ref."
        return {name: (keys.role, bool(self.get(prefix + keys.dynamic, False)), self.get(prefix + keys.budget),
                       self.get(prefix + keys.micro)) for name, keys in PASS_KEYS.items()}

    def pass_rows_per_rank(self, name: str) -> int:
        """Rows one micro-batch plan of the pass covers on one rank: the update plans per mini-batch."""
        role = self.passes()[name][0]
        if name == "update":
            return int(self.get("actor_rollout_ref.actor.ppo_mini_batch_size")) * self.group_size // self.dp(role)
        return self.train_rows // self.dp(role)


Rule = Callable[[Topology], list[str]]
RULES: dict[str, Rule] = {}
WARNINGS: dict[str, Rule] = {}


def register_rule(name: str, warning: bool = False) -> Callable[[Rule], Rule]:
    def decorate(rule: Rule) -> Rule:
        (WARNINGS if warning else RULES)[name] = rule
        return rule

    return decorate


@register_rule("world")
def _world(t: Topology) -> list[str]:
    problems = []
    for role in ("actor", "ref"):
        if t.world % t.sp(role):
            problems.append(f"actor_rollout_ref.{role}.ulysses_sequence_parallel_size={t.sp(role)} does not divide "
                            f"the {t.world} GPUs (trainer.n_gpus_per_node x trainer.nnodes)")
    rollout = "actor_rollout_ref.rollout"
    replica = (int(t.get(f"{rollout}.tensor_model_parallel_size", 1)) * int(t.get(f"{rollout}.data_parallel_size", 1))
               * int(t.get(f"{rollout}.pipeline_model_parallel_size", 1)))
    if t.world % replica:
        problems.append(f"a rollout replica of {replica} GPUs ({rollout}.tensor_model_parallel_size x "
                        f"data_parallel_size x pipeline_model_parallel_size) does not divide the {t.world} GPUs")
    return problems


@register_rule("dispatch")
def _dispatch(t: Topology) -> list[str]:
    """Every training pass hands each rank an equal chunk of the step's rows."""
    problems = []
    for role in ("actor", "ref"):
        if t.train_rows % t.dp(role):
            problems.append(
                f"{t.train_rows} rows per step (data.train_batch_size={t.train_prompts} x actor_rollout_ref.rollout."
                f"n={t.group_size}) do not split into equal chunks for the {t.dp(role)} data-parallel ranks of the "
                f"{role}"
            )
            break
    return problems


@register_rule("mini_batches")
def _mini_batches(t: Topology) -> list[str]:
    mini = int(t.get("actor_rollout_ref.actor.ppo_mini_batch_size"))
    ranks = t.dp("actor")
    problems = []
    if mini * t.group_size % ranks:
        problems.append(f"actor_rollout_ref.actor.ppo_mini_batch_size={mini} x rollout.n={t.group_size} rows are not "
                        f"a multiple of the {ranks} data-parallel ranks")
    if t.train_prompts % mini:
        problems.append(f"data.train_batch_size={t.train_prompts} is not a multiple of "
                        f"actor_rollout_ref.actor.ppo_mini_batch_size={mini} (each rank's rows split into whole "
                        f"mini-batches)")
    return problems


@register_rule("micro_batches")
def _micro_batches(t: Topology) -> list[str]:
    """verl's own fixed micro-batches must divide a rank's rows; dynamic ones must hold the longest row. (With the
    shared-prefix passes the fixed micro-batches are the recipe's, which need no divisibility.)"""
    problems = []
    for name, (role, dynamic, max_tokens, micro) in t.passes().items():
        if name == "ref" and not bool(t.get("actor_rollout_ref.actor.use_kl_loss", False)) and not bool(
                t.get("algorithm.use_kl_in_reward", False)):
            continue
        budget_key, micro_key = PASS_KEYS[name].budget, PASS_KEYS[name].micro
        if dynamic:
            budget = None if max_tokens is None else int(max_tokens) * t.sp(role)
            if budget is None or budget < t.max_row_tokens:
                problems.append(
                    f"the {name} pass: actor_rollout_ref.{budget_key}={max_tokens} cannot hold one row of "
                    f"data.max_prompt_length + data.max_response_length = {t.max_row_tokens} tokens"
                )
        elif micro is None or int(micro) < 1:
            problems.append(f"the {name} pass: actor_rollout_ref.{micro_key} must be set without dynamic batch size")
        elif not t.shared_prefix and t.pass_rows_per_rank(name) % int(micro):
            problems.append(
                f"the {name} pass: {t.pass_rows_per_rank(name)} rows per rank do not split into micro-batches of "
                f"actor_rollout_ref.{micro_key}={micro}"
            )
    return problems


@register_rule("generation")
def _generation(t: Topology) -> list[str]:
    """The full path sends prompts x n rows to the agent-loop workers in equal chunks (the RPO path pads)."""
    if bool(t.get("rpo.enable", False)):
        return []
    workers = int(t.get("actor_rollout_ref.rollout.agent.num_workers", 1))
    prompts = int(t.get("data.gen_batch_size", t.train_prompts)) if bool(
        t.get("algorithm.filter_groups.enable", False)) else t.train_prompts
    if prompts * t.group_size % workers:
        return [f"{prompts} prompts x rollout.n={t.group_size} rows per generation batch do not split over "
                f"actor_rollout_ref.rollout.agent.num_workers={workers} agent-loop workers"]
    return []


@register_rule("balancing")
def _balancing(t: Topology) -> list[str]:
    """The step's rows dealt to the ranks by the balancing the trainer will run."""
    if not bool(t.get("trainer.balance_batch", True)):
        return []
    ranks = t.dp("actor")
    balancing = rank_balancing(t.config)
    if balancing == VERL_GROUPS and t.train_prompts % ranks:
        return [f"verl's group balancing (use_prefix_grouper) needs the {t.train_prompts} groups per step "
                f"(data.train_batch_size) to be a multiple of the {ranks} data-parallel ranks"]
    if balancing != GROUPS_ANY_COUNT or t.train_rows % ranks:
        return []  # verl's own row balancing; an indivisible row count is the dispatch rule's
    group_ids = [row // t.group_size for row in range(t.train_rows)]
    lengths = [t.max_row_tokens] * t.train_rows
    try:
        assign_groups_to_ranks(group_ids, lengths, [int(t.get("data.max_prompt_length"))] * t.train_rows, ranks)
    except ValueError as error:
        return [f"rpo.shared_prefix rank balancing: {error}"]
    return []


@register_rule("packed_group_fits", warning=True)
def _packed_group_fits(t: Topology) -> list[str]:
    """A token budget below a whole packed group of the longest answers splits such groups: exact, shares less."""
    if not t.shared_prefix:
        return []
    response = int(t.get("data.max_response_length"))
    suffix = min(int(t.get("rpo.truncation.max_new_tokens", response)), response) if bool(
        t.get("rpo.enable", False)) else response
    group = t.max_row_tokens + (t.group_size - 1) * suffix
    warnings = []
    for name, (role, dynamic, max_tokens, _) in t.passes().items():
        if dynamic and max_tokens is not None and int(max_tokens) * t.sp(role) < group:
            warnings.append(f"the {name} pass's token budget ({max_tokens} per GPU) holds less than one packed group "
                            f"of the longest answers ({group} tokens): such groups are packed in parts")
    return warnings


def topology_report(config: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) of every registered rule."""
    topology = Topology(config if isinstance(config, DictConfig) else OmegaConf.create(config))
    errors = [problem for rule in RULES.values() for problem in rule(topology)]
    warnings = [problem for rule in WARNINGS.values() for problem in rule(topology)]
    return errors, warnings


def check_topology(config: Any, source: str = "the configuration") -> list[str]:
    """Raise :class:`TopologyError` listing every invariant ``config`` breaks; return the warnings."""
    errors, warnings = topology_report(config)
    if errors:
        world = Topology(OmegaConf.create(config) if not isinstance(config, DictConfig) else config).world
        raise TopologyError(f"{source} cannot run on its {world} GPUs; the trainer would stop at the first step:\n"
                            + "\n".join(f"  - {problem}" for problem in errors))
    return warnings
