//! The `items` sample: route parameters and JSON in and out.

use fnhost_sdk::{HttpRequest, HttpResponse, http_trigger, json};
use serde::{Deserialize, Serialize};

/// `GET api/items/{id:int}?tag=a&tag=b`: the id comes from the route (only digits
/// match), the tags from the query string.
#[http_trigger]
fn get_item(req: HttpRequest) -> HttpResponse {
    let id: i64 = match req.param("id").map(str::parse) {
        Some(Ok(id)) => id,
        _ => return HttpResponse::bad_request("id must be an integer"),
    };
    let tags: Vec<&str> = req
        .query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.as_str())
        .collect();
    HttpResponse::ok().json(&json!({ "id": id, "name": format!("item-{id}"), "tags": tags }))
}

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

#[derive(Serialize)]
struct Greeted {
    message: String,
    lang: String,
}

/// `POST api/greet/{lang?}` with `{"name": "Ada"}`; `lang` is optional (en, fr, de, es).
#[http_trigger]
fn greet(req: HttpRequest) -> HttpResponse {
    let body: Greeting = match req.json() {
        Ok(b) => b,
        Err(e) => {
            return HttpResponse::new(400).json(&json!({ "error": format!("invalid body: {e}") }));
        }
    };
    let lang = req.param("lang").unwrap_or("en").to_ascii_lowercase();
    let word = match lang.as_str() {
        "en" => "Hello",
        "fr" => "Bonjour",
        "de" => "Hallo",
        "es" => "Hola",
        _ => {
            return HttpResponse::new(400)
                .json(&json!({ "error": format!("unknown language '{lang}'") }));
        }
    };
    HttpResponse::ok().json(&Greeted {
        message: format!("{word}, {}!", body.name),
        lang,
    })
}

fnhost_sdk::export_functions!(get_item, greet);
