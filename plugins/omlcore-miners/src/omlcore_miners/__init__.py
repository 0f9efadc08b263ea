"""Triplet and pair miners for omlcore (OML's miners, vectorised).

Miners are registered as entry points in ``omlcore.miners`` (``all_triplets``, ``hard_triplets``,
``n_hard_triplets``, ``hard_cluster``, ``miner_with_bank``, ``triplets_with_memory``) and
``omlcore.pair_miners`` (``pairs``). ``hard_cluster`` and the two bank miners index into
``[batch; last_memory().features]``: see the README's extra-rows contract.
"""

from omlcore_miners._common import Memory
from omlcore_miners.bank import MinerWithBank, TripletMinerWithMemory
from omlcore_miners.inbatch import AllTripletsMiner, HardClusterMiner, HardTripletsMiner, NHardTripletsMiner
from omlcore_miners.pairs import PairsMiner

__all__ = [
    "AllTripletsMiner",
    "HardClusterMiner",
    "HardTripletsMiner",
    "Memory",
    "MinerWithBank",
    "NHardTripletsMiner",
    "PairsMiner",
    "TripletMinerWithMemory",
]

__version__ = "0.1.0"
