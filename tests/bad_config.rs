//! Broken folders are reported with their file (and line) while the others
//! load and serve; broken host-wide files stop start-up with file and line.

mod support;

use support::{Project, get};

#[test]
fn broken_folders_are_reported_and_the_rest_serves() {
    let p = Project::with(&["hello", "items"]);
    let f = p.functions();
    let hello_wasm = std::fs::read(f.join("hello/hello.wasm")).unwrap();
    let toml = |name: &str, route: &str| {
        format!(
            "[[functions]]\nname = \"{name}\"\ntrigger = {{ type = \"httpTrigger\", route = \"{route}\" }}\n"
        )
    };

    // Unknown key, with TOML's line.
    p.write(
        "functions/typo/function.toml",
        "[[functions]]\nname = \"typo\"\ntriger = { type = \"httpTrigger\" }\n",
    );
    std::fs::write(f.join("typo/typo.wasm"), &hello_wasm).unwrap();
    // No component at all.
    p.write("functions/nowasm/function.toml", &toml("nowasm", "nowasm"));
    // Bytes that are not WebAssembly.
    p.write(
        "functions/garbage/function.toml",
        &toml("garbage", "garbage"),
    );
    std::fs::write(f.join("garbage/garbage.wasm"), b"not wasm at all").unwrap();
    // A valid component that does not implement the world.
    p.write("functions/alien/function.toml", &toml("alien", "alien"));
    std::fs::write(
        f.join("alien/alien.wasm"),
        wat::parse_str("(component)").unwrap(),
    )
    .unwrap();
    // A function name another folder already has (folders load in name order: hello first).
    p.write(
        "functions/zdup/function.toml",
        &toml("hello", "another-hello"),
    );
    std::fs::write(f.join("zdup/zdup.wasm"), &hello_wasm).unwrap();
    // The same route and method as items' get_item.
    p.write(
        "functions/zclash/function.toml",
        "[[functions]]\nname = \"clash\"\ntrigger = { type = \"httpTrigger\", methods = [\"get\"], route = \"items/{n:int}\" }\n",
    );
    std::fs::write(f.join("zclash/zclash.wasm"), &hello_wasm).unwrap();

    let host = p.start(&[]);
    assert_eq!(get(&host.url("/api/hello?name=a")).0, 200);
    assert_eq!(get(&host.url("/api/items/1")).0, 200);
    for route in ["typo", "nowasm", "garbage", "alien", "another-hello"] {
        assert_eq!(get(&host.url(&format!("/api/{route}"))).0, 404, "{route}");
    }

    let out = host.output();
    let error_of = |folder: &str| {
        out.lines()
            .find(|l| l.contains(&format!("Function folder '{folder}' is in error:")))
            .unwrap_or_else(|| panic!("no error for {folder} in:\n{out}"))
            .to_string()
    };
    let e = error_of("typo");
    assert!(
        e.contains("typo/function.toml: TOML parse error at line 3"),
        "{e}"
    );
    assert!(out.contains("unknown field `triger`"), "{out}");
    assert!(error_of("nowasm").contains("has no .wasm component; build it with `host build`"));
    assert!(error_of("garbage").contains("garbage.wasm is not a valid WebAssembly component"));
    let e = error_of("alien");
    assert!(
        e.contains(
            "does not implement the fnhost world: it does not export `fnhost:function/http@0.1.0`"
        ),
        "{e}"
    );
    assert!(error_of("zdup").contains("function 'hello' is already defined by folder 'hello'"));
    let e = error_of("zclash");
    assert!(e.contains("function 'clash' (route 'items/{n:int}', GET) clashes with function 'get_item' of folder 'items'"), "{e}");
}

#[test]
fn malformed_host_files_stop_start_up_with_file_and_line() {
    let p = Project::with(&["hello"]);
    p.write("host.toml", "version = \"2.0\"\nfunctionTimeout = 5\n");
    let (status, out) = p.start_fails();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("host.toml: TOML parse error at line 2"),
        "{out}"
    );

    let p = Project::with(&["hello"]);
    p.write(
        "local.settings.toml",
        "[Values]\nA = \"x\"\n[Host]\nLocalHttpPort = \"seventy\"\n",
    );
    let (status, out) = p.start_fails();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("local.settings.toml: TOML parse error at line 4"),
        "{out}"
    );

    let p = Project::with(&["hello"]);
    p.write("local.settings.toml", "[Values\n");
    let (status, out) = p.start_fails();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("local.settings.toml: TOML parse error at line 1"),
        "{out}"
    );
}
