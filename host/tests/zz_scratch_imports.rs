use wasmtime::component::Component;
use wasmtime::{Config, Engine};
#[test]
fn print_imports() {
    let mut c = Config::new();
    c.wasm_component_model(true);
    let engine = Engine::new(&c).unwrap();
    for name in [
        "sum",
        "mean",
        "count",
        "daily-diff",
        "rest",
        "/tmp/nostd/target/wasm32-wasip2/plugin/nostd_probe",
    ] {
        let bytes = std::fs::read(if name.starts_with("/") {
            format!("{name}.wasm")
        } else {
            format!(
                "{}/../target/plugins/{name}.wasm",
                env!("CARGO_MANIFEST_DIR")
            )
        })
        .unwrap();
        let comp = unsafe { Component::deserialize(&engine, &[]) }.err();
        let _ = comp;
        let comp = Component::new(&engine, &bytes).unwrap();
        let ty = comp.component_type();
        let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
        println!("{name}: {imports:?}");
    }
}
