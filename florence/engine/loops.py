"""The loops: mmengine's iteration-based training loop, resuming streamed data without reading it again;
its test loop with the generation on Ray (:class:`RayTestLoop`).

On ``--resume`` mmengine's loop skips the batches already trained by loading them one by one
(decoding every image and building every target) and throwing them away. :class:`TrainLoop` tells
a dataset that can skip (:class:`~florence.data.MultiTaskStream`) where to start instead, so a
resumed run of streamed shards starts at once, at the same sample; other datasets are skipped as
mmengine does. The stream's order follows from the number of processes, dataloader workers and the
batch size: the checkpoint records them, and a resume with others is refused (it could not be exact).
"""
from __future__ import annotations

import pickle

import torch
from mmengine.runner import IterBasedTrainLoop, TestLoop
from mmengine.runner.amp import autocast
from mmengine.runner.loops import _InfiniteDataloaderIterator, _parse_losses, _update_losses

from ..cluster import check_engine, ray_data
from ..registry import LOOPS

__all__ = ["TrainLoop", "RayTestLoop"]


class _Skipped:
    """The first ``n`` batches (which mmengine's loop discards on resume) as ``None``, then ``iterator``'s."""

    def __init__(self, n: int, iterator):
        self.n, self.iterator = n, iterator

    def __iter__(self):
        return self

    def __next__(self):
        if self.n > 0:
            self.n -= 1
            return None
        return next(self.iterator)


@LOOPS.register_module()
class TrainLoop(IterBasedTrainLoop):
    """:class:`mmengine.runner.IterBasedTrainLoop` whose resume fast-forwards a streamed dataset."""

    def run(self):
        dataset = self.dataloader.dataset
        if not hasattr(dataset, "fast_forward"):
            return super().run()
        # the order of a stream follows from the ranks, workers and batch size: a resume needs the same
        layout = dict(world_size=int(dataset.world_size), workers=max(1, int(self.dataloader.num_workers)),
                      batch_size=int(self.dataloader.batch_size))
        saved = self.runner.message_hub.get_info("stream_layout")
        if self._iter > 0 and saved is not None and dict(saved) != layout:
            raise ValueError(f"cannot resume this stream exactly: the checkpoint was trained with {dict(saved)} "
                             f"(processes, dataloader workers per process, batch size per process), this run has "
                             f"{layout}; resume with the same, or start a new run (load_from=CHECKPOINT)")
        self.runner.message_hub.update_info("stream_layout", layout)
        if self._iter > 0:
            dataset.fast_forward(self._iter, self.dataloader.batch_size)
            # workers copy the dataset when they start: start new ones (persistent ones included); the
            # length mmengine asked for is an epoch's, not the endless stream's (torch would warn past it)
            self.dataloader._iterator = None
            self.dataloader._IterableDataset_len_called = None
            self.dataloader_iterator = _Skipped(self._iter, _InfiniteDataloaderIterator(self.dataloader))
        return super().run()


class _Generate:
    """One replica of a :class:`RayTestLoop`: the loaded model (one copy per actor), the test set and
    its collate; a row (a batch's indices) in, its outputs out (and the batch itself when asked)."""

    def __init__(self, model_ref, dataset, collate, fp16: bool):
        import ray

        self.model = ray.get(model_ref[0])  # in a list: Ray Data hands constructor arguments over as they are
        self.model.eval()
        self.dataset, self.collate, self.fp16 = dataset, collate, fp16

    def __call__(self, row: dict) -> dict:
        data_batch = self.collate([self.dataset[i] for i in row["indices"]])
        with torch.no_grad(), autocast(enabled=self.fp16):
            outputs = self.model.test_step(data_batch)
        return dict(batch=row["batch"], payload=pickle.dumps((data_batch if row["keep"] else None, outputs)))


@LOOPS.register_module()
class RayTestLoop(TestLoop):
    """mmengine's test loop with the model's generation on Ray Data (``florence test --engine ray``):
    the dataloader's batches (the same indices, in the same order) run through ``model.test_step`` in
    an actor pool of ``replicas`` copies of the loaded model; the evaluator and the hooks get the
    outputs in batch order, so the metric table is the local run's. Hooks get each batch's data for
    the first batches only (those :class:`~florence.engine.hooks.EvaluationReportHook` draws), not for
    the rest: the pixels stay in the replicas. The replicas read the test set themselves: on several
    machines its files must be where every node sees them."""

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False, address=None, replicas: int = 1,
                 cpus_per_replica: float = 1, gpus_per_replica: float = 0):
        super().__init__(runner, dataloader, evaluator, fp16)
        check_engine("RayTestLoop", "ray", replicas, cpus_per_replica, gpus_per_replica)
        self.address, self.replicas = address, int(replicas)
        self.cpus, self.gpus = cpus_per_replica, gpus_per_replica

    def run(self) -> dict:
        from mmengine.model import is_model_wrapper

        from .hooks import EvaluationReportHook

        runner = self.runner
        runner.call_hook("before_test")
        runner.call_hook("before_test_epoch")
        runner.model.eval()
        self.test_loss.clear()
        batches = [list(indices) for indices in self.dataloader.batch_sampler]
        drawn = max([h.num_drawings for h in runner.hooks if isinstance(h, EvaluationReportHook)], default=0)
        keep = -(-drawn // max(1, self.dataloader.batch_size or 1))  # the batches whose data the hooks get
        ray = ray_data(self.address, job="florence test --engine ray")
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rows = [dict(batch=b, indices=indices, keep=b < keep) for b, indices in enumerate(batches)]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))  # a block per batch
        ds = ds.map(_Generate, fn_constructor_args=([ray.put(model)], self.dataloader.dataset,
                                                    self.dataloader.collate_fn, self.fp16),
                    compute=ray.data.ActorPoolStrategy(size=self.replicas), num_cpus=self.cpus,
                    num_gpus=self.gpus or None)
        done, turn = {}, 0
        for row in ds.iter_rows():  # as they come; evaluated in batch order
            done[int(row["batch"])] = pickle.loads(row["payload"])
            while turn in done:
                data_batch, outputs = done.pop(turn)
                runner.call_hook("before_test_iter", batch_idx=turn, data_batch=data_batch)
                outputs, self.test_loss = _update_losses(outputs, self.test_loss)
                self.evaluator.process(data_samples=outputs, data_batch=data_batch)
                runner.call_hook("after_test_iter", batch_idx=turn, data_batch=data_batch, outputs=outputs)
                turn += 1
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.test_loss:
            metrics.update(_parse_losses(self.test_loss, "test"))
        runner.call_hook("after_test_epoch", metrics=metrics)
        runner.call_hook("after_test")
        return metrics
