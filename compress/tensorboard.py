"""TensorBoard event files for a run (optional extra ``tensorboard``), written by an observer."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from compress import groups as G
from compress.errors import CompressError
from compress.sparsity import LayerSparsity
from compress.training import EpochResult


def require_tensorboard() -> None:
    """Fail before anything is written when ``--tensorboard`` cannot work."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise CompressError('--tensorboard: needs the tensorboard package: pip install -e ".[tensorboard]"') from None


class TensorBoardLogger:
    """Scalars per epoch (losses per rule, top1/top5, lr, sparsity per layer) and, per layer, the
    histogram of group norms. Tags: ``loss/data``, ``loss/<rule>``, ``loss/total``, ``val/top1``,
    ``val/top5``, ``val/loss``, ``lr``, ``sparsity/total``, ``sparsity/<param>``, ``group_norms/<param>``."""

    def __init__(self, log_dir: Path, groups: dict[str, str]):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.groups = groups  # parameter name -> group whose norms are histogrammed

    def log_epoch(self, result: EpochResult, layers: list[LayerSparsity], total: float, model: nn.Module) -> None:
        step, w = result.epoch, self.writer
        w.add_scalar("loss/data", result.data_loss, step)
        w.add_scalar("loss/total", result.train_loss, step)
        for name, value in result.rule_losses.items():
            w.add_scalar(f"loss/{name}", value, step)
        w.add_scalar("val/top1", result.top1, step)
        w.add_scalar("val/top5", result.top5, step)
        w.add_scalar("val/loss", result.val_loss, step)
        w.add_scalar("lr", result.lr, step)
        w.add_scalar("sparsity/total", total, step)
        for layer in layers:
            w.add_scalar(f"sparsity/{layer.name}", layer.fine, step)
        params = dict(model.named_parameters())
        for name, group in self.groups.items():
            norms = G.group_scores(params[name].detach().float(), group).cpu()
            w.add_histogram(f"group_norms/{name}", norms, step)
        w.flush()

    def close(self) -> None:
        self.writer.close()
