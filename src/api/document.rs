//! Parts of the OpenAPI document that are derived from the routes after they are collected:
//! the problem type catalogue, the responses every authenticated operation can return, and
//! the links from a created distribution to the operations on it.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use super::error::ProblemType;

/// The collection path whose POST creates the resources under [`ITEM_PREFIX`].
const COLLECTION: &str = "/v1/distributions";
const ITEM_PREFIX: &str = "/v1/distributions/{id}";

/// Adds the derived parts to a document that already contains every route.
pub fn complete(document: &mut OpenApi) {
    add_problem_types(document);
    add_common_responses(document);
    add_create_links(document);
}

/// Lists every problem type under `x-problem-types`, generated from `ProblemType::ALL` so the
/// document cannot drift from the code.
fn add_problem_types(document: &mut OpenApi) {
    let types: Vec<serde_json::Value> = ProblemType::ALL
        .iter()
        .map(|kind| {
            serde_json::json!({
                "type": kind.uri(),
                "title": kind.title(),
                "status": kind.status().as_u16(),
                "description": kind.description(),
            })
        })
        .collect();
    let extensions = document.extensions.get_or_insert_with(Extensions::default);
    extensions.insert(
        "x-problem-types".to_owned(),
        serde_json::Value::Array(types),
    );
}

fn problem_response(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Seconds to wait before the next request"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

/// Documents the 408 and 429 responses on every operation that needs a token, because the
/// timeout and the per-owner rate limit apply to all of them.
fn add_common_responses(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let authenticated = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            if !authenticated {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses
                .entry("408".to_owned())
                .or_insert_with(|| problem_response("The request timed out", false));
            responses
                .entry("429".to_owned())
                .or_insert_with(|| problem_response("Too many requests for this owner", true));
        }
    }
}

/// Links the create response to every operation on the new item, passing its `id`, so
/// clients and stateful test tools can follow from a create to the item's operations.
fn add_create_links(document: &mut OpenApi) {
    let mut targets: Vec<String> = Vec::new();
    for (path, item) in &mut document.paths.paths {
        if !path.starts_with(ITEM_PREFIX) {
            continue;
        }
        for operation in operations_mut(item) {
            if let Some(id) = &operation.operation_id {
                targets.push(id.clone());
            }
        }
    }

    let Some(create) = document
        .paths
        .paths
        .get_mut(COLLECTION)
        .and_then(|item| item.post.as_mut())
    else {
        return;
    };
    for (status, response) in &mut create.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        for target in &targets {
            // NOTE: utoipa 5.5 serializes `Link::operation_id` as `operation_id` instead of
            // the `operationId` that OpenAPI requires, so the field is written through the
            // link's flattened extensions instead.
            let mut extensions = Extensions::default();
            extensions.insert("operationId".to_owned(), target.clone().into());
            let link = LinkBuilder::new()
                .parameter("id", "$response.body#/id")
                .description(format!("`{target}` on the distribution just created"))
                .extensions(Some(extensions))
                .build();
            response.links.insert(target.clone(), RefOr::T(link));
        }
    }
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}
