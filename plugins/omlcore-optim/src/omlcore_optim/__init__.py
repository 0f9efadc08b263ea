"""omlcore-optim: the optimizers and learning-rate schedulers that omlcore pipeline configs name.

The classes are registered as entry points (groups ``omlcore.optimizers`` and ``omlcore.schedulers``);
configs refer to them by entry-point name, e.g. ``optimizer: {name: adamw, args: {lr: 3.0e-4}}``, and
omlcore imports this package only when a config names one of them. They subclass the ``torch.optim``
classes with typed, config-friendly constructors (see :mod:`omlcore_optim.optimizers` and
:mod:`omlcore_optim.schedulers`); ``LambdaWarmup`` (``lambda_warmup``) is this package's own.
"""

from omlcore_optim.optimizers import (
    ASGD,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
)
from omlcore_optim.schedulers import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaWarmup,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    StepLR,
)

__version__ = "0.1.0"

__all__ = [
    "ASGD",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LambdaWarmup",
    "LinearLR",
    "MultiStepLR",
    "NAdam",
    "OneCycleLR",
    "PolynomialLR",
    "RAdam",
    "RMSprop",
    "ReduceLROnPlateau",
    "Rprop",
    "StepLR",
    "__version__",
]
