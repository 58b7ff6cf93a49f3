//! Sorting CloudFront's failures into the classes the lifecycle acts on.

use aws_sdk_cloudfront::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::lifecycle::{CallError, ErrorClass};

/// Classifies a failed SDK call. The SDK has already retried what its retry policy covers
/// (throttling and transient errors, up to the configured attempts) before this runs.
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let message = service.err().message().unwrap_or("").to_owned();
            let http_status = service.raw().status().as_u16();
            let class = class_of(&code, &message, http_status);
            CallError {
                class,
                code,
                message,
            }
        }
        SdkError::TimeoutError(_) => transient("Timeout", "the call timed out"),
        SdkError::DispatchFailure(failure) => transient(
            "DispatchFailure",
            &format!("the request was not sent: {failure:?}"),
        ),
        SdkError::ResponseError(failure) => transient(
            "ResponseError",
            &format!("the response was lost or unreadable: {failure:?}"),
        ),
        SdkError::ConstructionFailure(failure) => CallError {
            class: ErrorClass::Permanent,
            code: "ConstructionFailure".to_owned(),
            message: format!("the request could not be built: {failure:?}"),
        },
        other => transient("Unknown", &format!("{other:?}")),
    }
}

fn transient(code: &str, message: &str) -> CallError {
    CallError {
        class: ErrorClass::Transient,
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// Maps CloudFront's error code (and, for codes it does not know, the HTTP status) to a class.
pub fn class_of(code: &str, message: &str, http_status: u16) -> ErrorClass {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => ErrorClass::Throttled,
        "PreconditionFailed" | "InvalidIfMatchVersion" => ErrorClass::StaleETag,
        "DistributionNotDisabled" => ErrorClass::NotDisabled,
        "NoSuchDistribution" => ErrorClass::NotFound,
        "DistributionAlreadyExists" => match existing_distribution_id(message) {
            Some(cloudfront_id) => ErrorClass::AlreadyExists { cloudfront_id },
            None => ErrorClass::Permanent,
        },
        "InvalidViewerCertificate" => ErrorClass::PermanentUnlessSoon,
        "ServiceUnavailable"
        | "InternalError"
        | "InternalFailure"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorClass::Transient,
        _ if http_status >= 500 || http_status == 408 => ErrorClass::Transient,
        _ if http_status == 429 => ErrorClass::Throttled,
        _ => ErrorClass::Permanent,
    }
}

/// Takes the distribution id from a DistributionAlreadyExists message, which ends with it
/// ("... Already exists: E2QWRUHAPOMQZL"). CloudFront ids are upper-case letters and digits.
pub fn existing_distribution_id(message: &str) -> Option<String> {
    let last = message
        .trim()
        .trim_end_matches('.')
        .rsplit(|c: char| c.is_whitespace() || c == ':')
        .next()?;
    let looks_like_id = last.len() >= 8
        && last.len() <= 32
        && last
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    looks_like_id.then(|| last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_from_already_exists_message() {
        let message = "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: E2QWRUHAPOMQZL";
        assert_eq!(
            existing_distribution_id(message),
            Some("E2QWRUHAPOMQZL".to_owned())
        );
    }

    #[test]
    fn already_exists_without_id_is_permanent() {
        assert_eq!(
            class_of("DistributionAlreadyExists", "exists", 409),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn codes_map_to_classes() {
        assert_eq!(
            class_of("Throttling", "Rate exceeded", 400),
            ErrorClass::Throttled
        );
        assert_eq!(
            class_of("PreconditionFailed", "", 412),
            ErrorClass::StaleETag
        );
        assert_eq!(
            class_of("InvalidIfMatchVersion", "", 400),
            ErrorClass::StaleETag
        );
        assert_eq!(
            class_of("DistributionNotDisabled", "", 409),
            ErrorClass::NotDisabled
        );
        assert_eq!(
            class_of("NoSuchDistribution", "", 404),
            ErrorClass::NotFound
        );
        assert_eq!(
            class_of("ServiceUnavailable", "", 503),
            ErrorClass::Transient
        );
        assert_eq!(class_of("Whatever", "", 502), ErrorClass::Transient);
        assert_eq!(class_of("Whatever", "", 408), ErrorClass::Transient);
        assert_eq!(class_of("IllegalUpdate", "", 400), ErrorClass::Permanent);
        assert_eq!(class_of("AccessDenied", "", 403), ErrorClass::Permanent);
        assert_eq!(
            class_of("CNAMEAlreadyExists", "", 409),
            ErrorClass::Permanent
        );
        assert_eq!(
            class_of("TooManyDistributions", "", 400),
            ErrorClass::Permanent
        );
        assert_eq!(
            class_of("InvalidViewerCertificate", "", 400),
            ErrorClass::PermanentUnlessSoon
        );
        assert_eq!(class_of("SomethingNew", "", 400), ErrorClass::Permanent);
    }
}
