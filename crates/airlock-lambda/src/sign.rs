//! The `sign` function: API Gateway (HTTP API, payload 2.0, JWT authorizer) requests to the
//! upload API. The tenant and user come only from the claims the authorizer verified.

use airlock_api::{Api, ApiRequest, Problem, caller_from_claims};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};

/// Answers one API Gateway request with `api`; `tenant_claim` names the claim that carries
/// the tenant.
pub async fn handle(api: &Api, tenant_claim: &str, request: Request) -> Response<Body> {
    let claims = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|authorizer| authorizer.jwt.as_ref())
            .map(|jwt| jwt.claims.clone()),
        _ => None,
    };
    let caller = || match &claims {
        Some(claims) => caller_from_claims(|name| claims.get(name).cloned(), tenant_claim),
        // A route without the authorizer: a deployment mistake, never an anonymous caller.
        None => Err(Problem::unauthorized(
            "the request carries no verified token claims",
        )),
    };
    let path = request.raw_http_path().to_owned();
    let (parts, body) = request.into_parts();
    let bytes: &[u8] = match &body {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        // Empty, or a streaming body API Gateway never sends.
        _ => &[],
    };
    let response = api
        .handle(
            ApiRequest {
                method: &parts.method,
                path: &path,
                headers: &parts.headers,
                body: bytes,
            },
            caller,
        )
        .await;
    lambda_response(response)
}

/// An API answer as Lambda's HTTP response: text bodies as text, anything else as binary.
#[must_use]
pub fn lambda_response(response: http::Response<Vec<u8>>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    Response::from_parts(parts, body)
}
