"""`mean` in Python: the same plugin as plugins/mean (Rust), accumulator included (state
version 1: total f64 and count u64, little-endian), so the two are interchangeable.

Build:  componentize-py -d wit -w aggregation componentize app -p plugins/python/mean -o mean.wasm
Its runtime imports clocks, randomness, files and sockets: deploy it to a tenant with
wasi = "deterministic" (README, Tenants). plugins/README.md has the steps.
"""
import struct

from wit_world import exports
from wit_world.exports import fold

STATE = struct.Struct("<dQ")


class Fold(exports.Fold):
    def info(self) -> fold.PluginInfo:
        return fold.PluginInfo(name="mean", state_version=1, includes_window_start=False, min_inputs=1, max_inputs=1)

    def init(self, params, inputs, window) -> bytes:
        return STATE.pack(0.0, 0)

    def fold(self, state, window, samples) -> bytes:
        total, count = STATE.unpack(state)
        for sample in samples:
            total += sample.value  # in order, as the Rust plugin adds
        return STATE.pack(total, count + len(samples))

    def finish(self, state, window):
        total, count = STATE.unpack(state)
        return total / count if count else None
