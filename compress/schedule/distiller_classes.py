"""Every class a Distiller schedule can name, and what compress does with each.

Distiller's ``config.py`` looks a schedule's ``class:`` up in one namespace built from
``torch.optim.lr_scheduler`` and its own ``thinning``, ``pruning``, ``regularization``,
``learning_rate`` and ``quantization`` packages. The public classes of those packages (Distiller's
last release) are listed here, so that a class Distiller had and compress does not yet is reported
as exactly that, and never as a typo with a suggestion.
"""

from __future__ import annotations

# regularizers: class -> our penalty
REGULARIZERS = {
    "L1Regularizer": "l1",
    "GroupLassoRegularizer": "group_lasso",
    "GroupVarianceRegularizer": "group_variance",
    "L2Regularizer": "l2",  # ours: weight decay on chosen layers (Distiller had none)
}

PRUNERS = (
    "MagnitudeParameterPruner",
    "AutomatedGradualPruner",
    "L1RankedStructureParameterPruner_AGP",
    "L2RankedStructureParameterPruner_AGP",
    "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner_AGP",
    "GradientRankedFilterPruner_AGP",
    "RandomRankedFilterPruner_AGP",
    "BernoulliFilterPruner_AGP",
    "SparsityLevelParameterPruner",
    "SensitivityPruner",
    "SplicingPruner",
    "StructureParameterPruner",
    "L1RankedStructureParameterPruner",
    "L2RankedStructureParameterPruner",
    "ActivationAPoZRankedFilterPruner",
    "ActivationMeanRankedFilterPruner",
    "GradientRankedFilterPruner",
    "RandomRankedFilterPruner",
    "RandomLevelStructureParameterPruner",
    "BernoulliFilterPruner",
    "FMReconstructionChannelPruner",
    "BaiduRNNPruner",
)

QUANTIZERS = (
    "Quantizer",
    "PostTrainLinearQuantizer",
    "QuantAwareTrainRangeLinearQuantizer",
    "NCFQuantAwareTrainQuantizer",
    "WRPNQuantizer",
    "DorefaQuantizer",
    "PACTQuantizer",
)

# thinning extensions: class -> when it thins. Distiller's StructureRemover (FilterRemover and
# ChannelRemover are its aliases; ResnetCifarFilterRemover came before them) thins at the first
# mini-batch of its epochs, after pruners applied their masks; the old ResnetCifarChannelRemover
# thinned at the end of its epochs.
THINNERS = {
    "StructureRemover": "begin",
    "FilterRemover": "begin",
    "ChannelRemover": "begin",
    "ResnetCifarFilterRemover": "begin",
    "ResnetCifarChannelRemover": "end",
}
# thinning_func_str -> what it removes
THINNING_FUNCS = {
    "remove_filters": "filters",
    "remove_channels": "channels",
    "contract_model": "both",
    "resnet_cifar_remove_filters": "filters",
    "resnet_cifar_remove_channels": "channels",
}

OTHER = (
    "DropFilterRegularizer",
    "KnowledgeDistillationPolicy",
    "PruningPolicy",
    "RegularizationPolicy",
    "QuantizationPolicy",
    "LRPolicy",
)

# lr schedulers of Distiller's own (torch.optim.lr_scheduler's classes are named by compress.lr)
LR_SCHEDULERS = ("MultiStepMultiGammaLR", "PolynomialLR")


SECTIONS = {"regularizers": REGULARIZERS, "pruners": PRUNERS, "quantizers": QUANTIZERS, "extensions": THINNERS}


def homes(cls: str) -> list[str]:
    """The sections of a Distiller schedule where ``cls`` belongs."""
    return sorted(section for section, names in SECTIONS.items() if cls in names)


def distillers(cls: object) -> bool:
    """Whether ``cls`` is a class a Distiller schedule could name (in any section)."""
    return isinstance(cls, str) and any(cls in names for names in (REGULARIZERS, THINNERS, PRUNERS, QUANTIZERS, OTHER))


WHY_NOT = {
    "BaiduRNNPruner": "it prunes recurrent networks' gates, and compress trains image classifiers",
    "FMReconstructionChannelPruner": "it needs feature-map reconstruction by least squares over sampled inputs",
}


def not_supported(cls: str) -> str:
    why = f" ({WHY_NOT[cls]})" if cls in WHY_NOT else ""
    return f"Distiller's {cls} is not supported yet{why}"
