"""Text for ``compress models`` and ``compress datasets``: one line per registered name."""

from __future__ import annotations


def _lines(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {text}" for name, text in rows)


def format_models() -> str:
    from compress.models import all_models

    entries = all_models().values()
    ours = [(e.name, e.description) for e in entries if not e.description.startswith("torchvision")]
    zoo = sorted((e.name, e.description) for e in entries if e.description.startswith("torchvision"))
    return "\n".join(
        [
            _lines(ours + zoo),
            "package.module:function  a model of your own: a callable returning an nn.Module, given "
            "num_classes / in_channels / input_size if it takes them",
        ]
    )


def format_datasets() -> str:
    from compress.data import DATASETS

    return _lines([(e.name, e.description) for e in DATASETS.values()])
