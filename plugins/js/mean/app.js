// `mean` in JavaScript: the same plugin as plugins/mean (Rust), accumulator included (state
// version 1: total f64 and count u64, little-endian), so the two are interchangeable.
//
// Build (componentize-js, pinned in scripts/versions.env; scripts/setup js installs it):
//   componentize-js plugins/js/mean/app.js -w wit -n aggregation -d http -d fetch-event -o mean.wasm
// Its runtime imports clocks, randomness and files: deploy it to a tenant with
// wasi = "deterministic" (README, Tenants).
function pack(total, count) {
  const view = new DataView(new ArrayBuffer(16));
  view.setFloat64(0, total, true);
  view.setBigUint64(8, BigInt(count), true);
  return new Uint8Array(view.buffer);
}
function unpack(state) {
  const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
  return [view.getFloat64(0, true), Number(view.getBigUint64(8, true))];
}
export const fold = {
  info() {
    return { name: "mean", stateVersion: 1, includesWindowStart: false, minInputs: 1, maxInputs: 1 };
  },
  init(params, inputs, window) { return pack(0, 0); },
  fold(state, window, samples) {
    let [total, count] = unpack(state);
    for (const s of samples) total += s.value;
    return pack(total, count + samples.length);
  },
  finish(state, window) {
    const [total, count] = unpack(state);
    return count > 0 ? total / count : undefined;
  },
};
