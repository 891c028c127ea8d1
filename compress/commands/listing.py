"""Text for ``compress models`` and ``compress datasets``: one line per registered name."""

from __future__ import annotations


def _lines(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {text}" for name, text in rows)


def format_models() -> str:
    from compress.models import MODELS, all_models

    entries = all_models()
    descriptions = MODELS.descriptions()
    ours = [(name, descriptions[name]) for name, e in entries.items() if not e.zoo]
    zoo = [(name, descriptions[name]) for name, e in entries.items() if e.zoo]
    return "\n".join(
        [
            _lines(ours + zoo),
            "package.module:function  a model of your own: a callable returning an nn.Module, given "
            "num_classes / in_channels / input_size if it takes them",
        ]
    )


def format_datasets() -> str:
    from compress.datasets import DATASETS

    return _lines(list(DATASETS.descriptions().items()))
