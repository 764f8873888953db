//! Deploying, replacing and removing function folders while the host runs.

mod support;

use std::time::Duration;

use support::{Project, deploy, folder, get, poll};

const RELOAD: Duration = Duration::from_secs(30);

#[test]
fn folders_load_swap_and_unload_while_serving() {
    let p = Project::with(&["hello"]);
    let mut host = p.start(&[]);
    assert_eq!(get(&host.url("/api/items/1")).0, 404);

    // Copy a folder in: served without a restart.
    deploy(&folder("items"), &p.functions().join("items"));
    poll("items to be served", RELOAD, || {
        (get(&host.url("/api/items/1")).0 == 200).then_some(())
    });
    host.wait_for("Loaded function folder 'items'", RELOAD);

    // Replace its function.toml: the old route goes, the new one comes.
    let toml = std::fs::read_to_string(p.functions().join("items/function.toml")).unwrap();
    std::fs::write(
        p.functions().join("items/function.toml"),
        toml.replace("items/{id:int}", "things/{id:int}"),
    )
    .unwrap();
    poll("the new route", RELOAD, || {
        (get(&host.url("/api/things/1")).0 == 200).then_some(())
    });
    assert_eq!(get(&host.url("/api/items/1")).0, 404);
    host.wait_for("Reloaded function folder 'items'", RELOAD);

    // A broken replacement is reported, and the working version keeps serving.
    std::fs::write(
        p.functions().join("items/function.toml"),
        "[[functions]]\nname = 1\n",
    )
    .unwrap();
    host.wait_for("Function folder 'items' is in error", RELOAD);
    assert_eq!(get(&host.url("/api/things/2")).0, 200);

    // Remove it: 404.
    std::fs::remove_dir_all(p.functions().join("items")).unwrap();
    poll("items to be unloaded", RELOAD, || {
        (get(&host.url("/api/things/1")).0 == 404).then_some(())
    });
    host.wait_for("Unloaded function folder 'items'", RELOAD);
    assert_eq!(get(&host.url("/api/hello?name=x")).0, 200);
}

#[test]
fn requests_in_flight_finish_on_the_old_version() {
    let p = Project::with(&["misbehave"]);
    let mut host = p.start(&[]);
    let in_flight = std::thread::spawn({
        let url = host.url("/api/slow?ms=3000");
        move || get(&url)
    });
    host.wait_for("Executing 'Functions.slow'", RELOAD);
    std::fs::remove_dir_all(p.functions().join("misbehave")).unwrap();
    host.wait_for("Unloaded function folder 'misbehave'", RELOAD);
    assert_eq!(
        get(&host.url("/api/slow?ms=1")).0,
        404,
        "new requests no longer find it"
    );
    assert_eq!(
        in_flight.join().unwrap(),
        (200, "slept 3000 ms".to_string())
    );
}
