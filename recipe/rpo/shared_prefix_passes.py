"""What :class:`RayRPOTrainer` adds around verl's training passes for ``rpo.shared_prefix``, as a mixin.

The rank balancing keeps each group on one rank where it fits and accepts any group count
(``verl_ext/shared_prefix/rank_balance.py``); each pass's packing report, which verl's trainer drops for the log-prob
passes, is read back and logged as ``rpo/shared_prefix/packed_token_frac/<pass>``.
"""

from __future__ import annotations

from typing import Any

import torch
from verl import DataProto
from verl.utils import tensordict_utils as tu
from verl.utils.seqlen_balancing import log_seqlen_unbalance

from verl_ext.shared_prefix.batch import shared_part_lengths
from verl_ext.shared_prefix.packing_metrics import SPLIT_GROUPS_METRIC, PassMetricsTap, frac_metric, require_packing
from verl_ext.shared_prefix.rank_balance import GROUPS_ANY_COUNT, assign_groups_to_ranks, rank_balancing


class SharedPrefixPassesMixin:
    """Needs ``config`` and ``_step`` (the step's settings) from the trainer, and verl's ``init_workers``,
    ``_balance_batch`` and ``_get_dp_size`` after it in the method order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pass_metrics = PassMetricsTap(lambda output: tu.get(output, "metrics") if output is not None else {})

    def init_workers(self) -> None:
        """verl's workers, with the log-prob methods tapped for the packing report verl's trainer drops."""
        super().init_workers()
        groups = {id(wg): wg for wg in (self.actor_rollout_wg, getattr(self, "ref_policy_wg", None)) if wg is not None}
        for wg in groups.values():
            for name in ("compute_log_prob", "compute_ref_log_prob"):
                if hasattr(wg, name):
                    setattr(wg, name, self._pass_metrics.wrap(getattr(wg, name)))

    def _balance_batch(self, batch: DataProto, metrics: dict, logging_prefix: str = "global_seqlen",
                       keep_minibatch: bool = False) -> None:
        """verl's balancing, except with shared-prefix passes: equal rows per rank, groups whole where they fit,
        any group count (``verl_ext/shared_prefix/rank_balance.py``); how many groups were cut is logged."""
        if rank_balancing(self.config, shared_prefix=self._step.rpo.shared_prefix) != GROUPS_ANY_COUNT:
            super()._balance_batch(batch, metrics, logging_prefix=logging_prefix, keep_minibatch=keep_minibatch)
            return
        row_lens = batch.batch["attention_mask"].sum(-1)
        assignment = assign_groups_to_ranks(
            list(batch.non_tensor_batch["uid"]), row_lens.tolist(), shared_part_lengths(batch).tolist(),
            self._get_dp_size(self.actor_rollout_wg, "actor"),
        )
        batch.reorder(torch.tensor(assignment.order))
        metrics[SPLIT_GROUPS_METRIC] = assignment.split_groups
        metrics.update(log_seqlen_unbalance(seqlen_list=row_lens.tolist(), partitions=assignment.partitions,
                                            prefix=logging_prefix))

    def _log_packing(self, metrics: dict, pass_name: str, worker_metrics: dict, prefix: str = "") -> None:
        """``rpo/shared_prefix/packed_token_frac/<pass>`` from the workers' report (which is removed from
        ``worker_metrics``); with ``rpo.shared_prefix=true`` a pass without a report is an error."""
        if self._step.rpo.shared_prefix:
            metrics[frac_metric(pass_name)] = require_packing(worker_metrics, pass_name, prefix)
