//! The router and API Gateway's routes in the SAM template agree: a route missing from the
//! template is unreachable once deployed, and one missing from the router answers 404. Every
//! other method and path reaches the router too (`ANY`), so that its own 404 and 405 answer.

use api::{router, AppState};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeSet;
use std::sync::Arc;
use tasks_core::testing::memory::{MemoryQueue, MemoryStore, MemoryWorkflow};
use tasks_core::{Pacing, SystemClock};
use tower::ServiceExt;

const TEMPLATE: &str = include_str!("../../../../infra/template.yaml");
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

type Routes = BTreeSet<(String, String)>;

fn template() -> Yaml {
    serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML")
}

/// (METHOD, path) of every `Api` event of the api function.
fn api_events(template: &Yaml) -> Routes {
    template["Resources"]["ApiFunction"]["Properties"]["Events"]
        .as_mapping()
        .expect("ApiFunction has events")
        .values()
        .filter(|event| event["Type"].as_str() == Some("Api"))
        .map(|event| {
            let properties = &event["Properties"];
            (
                properties["Method"].as_str().unwrap().to_uppercase(),
                properties["Path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (METHOD, path) of every operation in the API's definition body, where each route's security
/// is set.
fn secured_operations(template: &Yaml) -> Routes {
    let paths = template["Resources"]["Api"]["Properties"]["DefinitionBody"]["paths"]
        .as_mapping()
        .expect("the Api has a definition body with paths");
    paths
        .iter()
        .flat_map(|(path, operations)| {
            let path = path.as_str().unwrap().to_string();
            operations.as_mapping().unwrap().keys().map(move |method| {
                let method = match method.as_str().unwrap() {
                    "x-amazon-apigateway-any-method" => "any",
                    method => method,
                };
                (method.to_uppercase(), path.clone())
            })
        })
        .collect()
}

/// Whether the router has a route for this method and path: anything but its fallbacks' answers
/// (404 `not_found`, 405).
async fn routed(app: &axum::Router, method: &str, path: &str) -> bool {
    let uri = path.replace("{id}", "probe");
    let request = Request::builder()
        .method(method)
        .uri(&uri)
        .header("content-type", "application/json")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_string));
    !(status == 405 || status == 404 && code.as_deref() == Some("not_found"))
}

#[tokio::test]
async fn every_router_route_is_an_api_gateway_route_and_back() {
    let template = template();
    let events = api_events(&template);
    assert_eq!(
        secured_operations(&template),
        events,
        "every Api event has its security in the definition body, and nothing else is there"
    );
    let app = router(AppState {
        store: Arc::new(MemoryStore::new()),
        queue: Arc::new(MemoryQueue::new()),
        workflow: Arc::new(MemoryWorkflow::new()),
        clock: Arc::new(SystemClock),
        pacing: Pacing::default(),
        signing_secrets: Default::default(),
        diagnostics: Default::default(),
    });
    // The router's paths: those of the template and of the OpenAPI document, each also with a
    // trailing slash (API Gateway treats `/console/` as `/console`).
    let (any, events): (Routes, Routes) =
        events.into_iter().partition(|(method, _)| method == "ANY");
    let spec: serde_json::Value = serde_json::from_str(api::OPENAPI).unwrap();
    let documented = spec["paths"].as_object().unwrap().keys().cloned();
    let paths: BTreeSet<String> = events
        .iter()
        .map(|(_, path)| path.clone())
        .chain(documented)
        .collect();
    let any_paths: BTreeSet<String> = any.into_iter().map(|(_, path)| path).collect();
    let expected_any: BTreeSet<String> = paths
        .iter()
        .cloned()
        .chain(["/".to_string(), "/{proxy+}".to_string()])
        .collect();
    assert_eq!(
        any_paths, expected_any,
        "every route's path, the root and a catch-all take ANY method, so the router answers 404/405"
    );
    let mut routes = Routes::new();
    for path in &paths {
        for candidate in [path.clone(), format!("{path}/")] {
            for method in METHODS {
                if routed(&app, method, &candidate).await {
                    routes.insert((method.to_string(), path.clone()));
                }
            }
        }
    }
    assert_eq!(
        routes, events,
        "the router's routes (left) and the template's Api events (right) differ"
    );
}
