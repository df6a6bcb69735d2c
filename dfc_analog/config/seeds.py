"""Named seed streams: every random draw comes from a generator seeded by (stream, run seed,
indices), so that one place says which draws depend on what and no two streams overlap by chance.

The streams of a training run keep the formulas runs have always used (same seed, same numbers);
streams without a formula derive their seed from a hash of the stream's name and indices.
"""
from __future__ import annotations

import hashlib

import torch

SEED_LIMIT = 2 ** 63

# stream name -> seed formula (or None: hashed)
STREAMS = {
    "validation_split": lambda seed: seed,                          # the fixed validation split
    "network": lambda seed: seed,                                   # W_i, b_i, Q_i at the start
    "student_teacher": lambda seed: seed,                           # the task's data and teacher
    "epoch_order": lambda seed, epoch: seed * 100003 + epoch,       # minibatch order of an epoch
    "sleep_noise": lambda seed, pass_index, batch:                  # eq. (12) noise of a minibatch
        seed * 1000003 + pass_index * 10007 + batch,
    "fig1d_sleep_noise": lambda seed, epoch, batch: seed * 7919 + epoch * 1009 + batch,
    "realisation": None,                                            # device draws of a chip
    "read_noise": None,                                             # read noise of a phase
    "circuit_read_noise": None,                                     # the circuit's, in validation
    "hardware_write": None,                                         # devices of a weight write
    "sleep_circuit": None,                                          # eq. (12) noise of a circuit
    "single_phase_circuit": None,                                   # the same, in the single phase
}


def stream_seed(stream: str, seed: int, *index: int) -> int:
    """The seed of draw ``index`` of ``stream`` in a run of seed ``seed``."""
    if stream not in STREAMS:
        raise KeyError(f"unknown seed stream '{stream}'")
    formula = STREAMS[stream]
    if formula is not None:
        return formula(int(seed), *map(int, index)) % SEED_LIMIT
    text = repr((stream, int(seed)) + tuple(int(i) for i in index)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % SEED_LIMIT


def generator(stream: str, seed: int, *index: int, device=None) -> torch.Generator:
    """A torch generator on ``device`` seeded for draw ``index`` of ``stream``."""
    gen = torch.Generator(device=device) if device is not None else torch.Generator()
    return gen.manual_seed(stream_seed(stream, seed, *index))
