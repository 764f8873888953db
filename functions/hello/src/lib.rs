//! The `hello` sample: the HTTP function that Azure Functions' template creates.

use fnhost_sdk::{HttpRequest, HttpResponse, http_trigger};

/// `GET/POST api/hello?name=Ada` or a JSON body `{"name": "Ada"}`.
#[http_trigger]
fn hello(req: HttpRequest) -> HttpResponse {
    let name = req.query("name").map(str::to_owned).or_else(|| {
        let body: fnhost_sdk::JsonValue = req.json().ok()?;
        body.get("name")?.as_str().map(str::to_owned)
    });
    match name {
        Some(name) => {
            fnhost_sdk::log::info(format!("greeting {name}"));
            HttpResponse::ok().text(format!(
                "Hello, {name}. This HTTP triggered function executed successfully."
            ))
        }
        None => HttpResponse::ok().text(
            "This HTTP triggered function executed successfully. Pass a name in the query \
             string or in the request body for a personalized response.",
        ),
    }
}

fnhost_sdk::export_functions!(hello);
