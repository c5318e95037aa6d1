"""The training loop: mmengine's iteration-based loop, resuming streamed data without reading it again.

On ``--resume`` mmengine's loop skips the batches already trained by loading them one by one
(decoding every image and building every target) and throwing them away. :class:`TrainLoop` tells
a dataset that can skip (:class:`~florence.data.MultiTaskStream`) where to start instead, so a
resumed run of streamed shards starts at once, at the same sample; other datasets are skipped as
mmengine does. The stream's order follows from the number of processes, dataloader workers and the
batch size: the checkpoint records them, and a resume with others is refused (it could not be exact).
"""
from __future__ import annotations

from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from ..registry import LOOPS

__all__ = ["TrainLoop"]


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
