"""omlcore-pml: pytorch-metric-learning's losses and miners as omlcore components.

Every usable loss and miner of pytorch-metric-learning (PML) 2.9 is registered by name in omlcore's
entry-point groups: ``pml_multi_similarity`` (``omlcore.losses``), ``pml_triplet_margin_miner``
(``omlcore.miners``), ``pml_multi_similarity_miner`` (``omlcore.pair_miners``)... The wrappers have
typed signatures, so omlcore validates a config's ``args`` for them like for its own components, and the
losses take a nested ``miner`` or ``pair_miner``. See :mod:`omlcore_pml.catalog` for the naming scheme
and the classes left out, :mod:`omlcore_pml.losses`, :mod:`omlcore_pml.miners` and
:mod:`omlcore_pml.specs` for the details. Importing this package imports torch and PML.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
