//! The CloudFront rules the simulator enforces, observed through aws-sdk-cloudfront.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::types::{
    Aliases, DistributionConfig, DistributionConfigWithTags, Tag, Tags,
};
use cloudfront_lifecycle::cloudfront::{CallSettings, CloudFront};
use cloudfront_lifecycle::simulator::{
    DeployTime, DistributionStatus, ExternalChange, ExternalCreate, Simulator, SimulatorServer,
    SimulatorSettings,
};
use cloudfront_lifecycle::spec::DistributionSpec;

/// Long enough that no test observes the deploy finishing.
const LONG_DEPLOY: Duration = Duration::from_secs(600);
const POLL_DEADLINE: Duration = Duration::from_secs(10);

async fn start(deploy_time: Duration) -> (Simulator, SimulatorServer, Client) {
    let simulator = Simulator::new(SimulatorSettings {
        deploy_time: DeployTime::Fixed(deploy_time),
        ..SimulatorSettings::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = simulator.spawn(listener).await.unwrap();
    let client = client(&server.endpoint());
    (simulator, server, client)
}

/// Builds a client with retries off, so each test gets the simulator's errors unretried.
fn client(endpoint: &str) -> Client {
    let settings = CallSettings {
        max_attempts: 1,
        ..CallSettings::default()
    };
    CloudFront::for_endpoint(endpoint, &settings)
        .client()
        .clone()
}

/// Builds a complete config with the service's own builder, the one production uses.
fn distribution_config(caller_reference: &str, enabled: bool) -> DistributionConfig {
    let spec: DistributionSpec = serde_json::from_value(serde_json::json!({
        "origin": {"domain_name": "origin.example.com"},
        "comment": "simulator test",
        "enabled": enabled,
    }))
    .unwrap();
    cloudfront_lifecycle::cloudfront::config::distribution_config(caller_reference, &spec).unwrap()
}

/// Creates an enabled distribution and returns its id and ETag.
async fn create(client: &Client, caller_reference: &str) -> (String, String) {
    let output = client
        .create_distribution()
        .distribution_config(distribution_config(caller_reference, true))
        .send()
        .await
        .unwrap();
    let id = output.distribution().unwrap().id().to_string();
    (id, output.e_tag().unwrap().to_string())
}

/// Sends `Enabled=false` and returns the new ETag.
async fn disable(client: &Client, id: &str) -> String {
    let current = client
        .get_distribution_config()
        .id(id)
        .send()
        .await
        .unwrap();
    let mut config = current.distribution_config().unwrap().clone();
    config.enabled = false;
    let output = client
        .update_distribution()
        .id(id)
        .if_match(current.e_tag().unwrap())
        .distribution_config(config)
        .send()
        .await
        .unwrap();
    output.e_tag().unwrap().to_string()
}

async fn status(client: &Client, id: &str) -> String {
    let output = client.get_distribution().id(id).send().await.unwrap();
    output.distribution().unwrap().status().to_string()
}

async fn wait_deployed(client: &Client, id: &str) {
    let deadline = Instant::now() + POLL_DEADLINE;
    while status(client, id).await != "Deployed" {
        assert!(
            Instant::now() < deadline,
            "{id} not Deployed after {POLL_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn etag_changes_on_every_change() {
    let (simulator, _server, client) = start(Duration::ZERO).await;
    let (id, created) = create(&client, "etag-1").await;

    let read = client.get_distribution().id(&id).send().await.unwrap();
    assert_eq!(
        read.e_tag(),
        Some(created.as_str()),
        "Get returns the create ETag"
    );

    let updated = disable(&client, &id).await;
    assert_ne!(updated, created, "update gives a new ETag");
    let config = client
        .get_distribution_config()
        .id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        config.e_tag(),
        Some(updated.as_str()),
        "GetConfig returns the update ETag"
    );

    let changed = simulator
        .external_change(
            &id,
            ExternalChange {
                comment: Some("by hand".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_ne!(changed.etag, updated, "out-of-band change gives a new ETag");
    let read = client.get_distribution().id(&id).send().await.unwrap();
    assert_eq!(
        read.e_tag(),
        Some(changed.etag.as_str()),
        "Get returns the out-of-band ETag"
    );
}

#[tokio::test]
async fn update_stale_if_match_fails_412() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, stale) = create(&client, "stale-1").await;
    disable(&client, &id).await;

    let error = client
        .update_distribution()
        .id(&id)
        .if_match(&stale)
        .distribution_config(distribution_config("stale-1", false))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_precondition_failed(), "{error:?}");
}

#[tokio::test]
async fn delete_stale_if_match_fails_412() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, stale) = create(&client, "stale-2").await;
    disable(&client, &id).await;

    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&stale)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_precondition_failed(), "{error:?}");
}

#[tokio::test]
async fn update_missing_if_match_fails_400() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, _) = create(&client, "missing-1").await;

    let error = client
        .update_distribution()
        .id(&id)
        .distribution_config(distribution_config("missing-1", false))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_invalid_if_match_version(), "{error:?}");
}

#[tokio::test]
async fn delete_missing_if_match_fails_400() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, _) = create(&client, "missing-2").await;

    let error = client
        .delete_distribution()
        .id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_invalid_if_match_version(), "{error:?}");
}

#[tokio::test]
async fn status_in_progress_until_deploy_time() {
    let deploy_time = Duration::from_millis(300);
    let (_simulator, _server, client) = start(deploy_time).await;
    let started = Instant::now();
    let (id, _) = create(&client, "deploy-1").await;

    assert_eq!(
        status(&client, &id).await,
        "InProgress",
        "right after create"
    );
    wait_deployed(&client, &id).await;
    assert!(
        started.elapsed() >= deploy_time,
        "Deployed after {:?}",
        started.elapsed()
    );

    disable(&client, &id).await;
    assert_eq!(
        status(&client, &id).await,
        "InProgress",
        "right after disable"
    );
    wait_deployed(&client, &id).await;
}

#[tokio::test]
async fn delete_enabled_fails_409() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, etag) = create(&client, "delete-1").await;

    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_distribution_not_disabled(), "{error:?}");
}

#[tokio::test]
async fn delete_disabled_in_progress_fails_409() {
    let (simulator, _server, client) = start(Duration::ZERO).await;
    let (id, _) = create(&client, "delete-2").await;
    simulator.set_deploy_time(DeployTime::Fixed(LONG_DEPLOY));
    let etag = disable(&client, &id).await;

    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_distribution_not_disabled(), "{error:?}");
}

#[tokio::test]
async fn delete_disabled_deployed_succeeds() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, _) = create(&client, "delete-3").await;
    let etag = disable(&client, &id).await;

    let deleted = client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await;
    assert!(deleted.is_ok(), "{deleted:?}");

    let error = client
        .get_distribution()
        .id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        error.is_no_such_distribution(),
        "Get after delete: {error:?}"
    );
    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_no_such_distribution(), "second delete: {error:?}");
}

#[tokio::test]
async fn create_reused_caller_reference_fails_409() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, _) = create(&client, "reused-1").await;

    let error = client
        .create_distribution()
        .distribution_config(distribution_config("reused-1", true))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_distribution_already_exists(), "{error:?}");
    let message = error.meta().message().unwrap_or_default().to_string();
    assert!(
        message.ends_with(&id),
        "message {message:?} does not end with {id}"
    );
}

#[tokio::test]
async fn update_changed_caller_reference_fails_400() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, etag) = create(&client, "illegal-1").await;

    let error = client
        .update_distribution()
        .id(&id)
        .if_match(&etag)
        .distribution_config(distribution_config("illegal-2", true))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_illegal_update(), "{error:?}");
}

#[tokio::test]
async fn unknown_id_fails_404() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let id = "E0000000000000";

    let error = client
        .get_distribution()
        .id(id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_no_such_distribution(), "Get: {error:?}");
    let error = client
        .get_distribution_config()
        .id(id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_no_such_distribution(), "GetConfig: {error:?}");
    let error = client
        .update_distribution()
        .id(id)
        .if_match("E1")
        .distribution_config(distribution_config("unknown", false))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_no_such_distribution(), "Update: {error:?}");
    let error = client
        .delete_distribution()
        .id(id)
        .if_match("E1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_no_such_distribution(), "Delete: {error:?}");
}

#[tokio::test]
async fn list_pages_through_250_distributions() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    for index in 0..250 {
        create(&client, &format!("list-{index}")).await;
    }

    let mut seen = HashSet::new();
    let mut page_sizes = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let output = client
            .list_distributions()
            .set_marker(marker.clone())
            .max_items(100)
            .send()
            .await
            .unwrap();
        let list = output.distribution_list().unwrap();
        page_sizes.push(list.items().len());
        seen.extend(list.items().iter().map(|summary| summary.id().to_string()));
        if !list.is_truncated() {
            break;
        }
        marker = list.next_marker().map(str::to_string);
        assert!(marker.is_some(), "truncated page without NextMarker");
    }
    assert_eq!(page_sizes, vec![100, 100, 50]);
    assert_eq!(seen.len(), 250);
}

#[tokio::test]
async fn list_summary_matches_get() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, etag) = create(&client, "summary-1").await;

    let output = client.list_distributions().send().await.unwrap();
    let list = output.distribution_list().unwrap();
    let summary = &list.items()[0];
    assert_eq!(summary.id(), id);
    assert_eq!(summary.e_tag(), Some(etag.as_str()));
    assert_eq!(summary.status(), "Deployed");
    assert!(summary.enabled());
    assert_eq!(summary.comment(), "simulator test");
    assert_eq!(
        summary.arn(),
        format!("arn:aws:cloudfront::123456789012:distribution/{id}")
    );
}

#[tokio::test]
async fn config_round_trips_through_update() {
    let (_simulator, _server, client) = start(Duration::ZERO).await;
    let (id, _) = create(&client, "round-trip-1").await;
    let before = client
        .get_distribution_config()
        .id(&id)
        .send()
        .await
        .unwrap();

    client
        .update_distribution()
        .id(&id)
        .if_match(before.e_tag().unwrap())
        .distribution_config(before.distribution_config().unwrap().clone())
        .send()
        .await
        .unwrap();
    let after = client
        .get_distribution_config()
        .id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(after.distribution_config(), before.distribution_config());
}

#[tokio::test]
async fn tags_round_trip() {
    let (simulator, _server, client) = start(Duration::ZERO).await;
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build().unwrap();
    let output = client
        .create_distribution_with_tags()
        .distribution_config_with_tags(
            DistributionConfigWithTags::builder()
                .distribution_config(distribution_config("tags-1", true))
                .tags(Tags::builder().items(tag("team", "web")).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = output.distribution().unwrap().arn().to_string();
    client
        .tag_resource()
        .resource(&arn)
        .tags(Tags::builder().items(tag("owner", "alice")).build())
        .send()
        .await
        .unwrap();

    let listed = client
        .list_tags_for_resource()
        .resource(&arn)
        .send()
        .await
        .unwrap();
    let pairs: Vec<(String, Option<String>)> = listed
        .tags()
        .unwrap()
        .items()
        .iter()
        .map(|tag| (tag.key().to_string(), tag.value().map(str::to_string)))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("team".into(), Some("web".into())),
            ("owner".into(), Some("alice".into()))
        ]
    );
    assert_eq!(
        simulator.distributions()[0].tags.len(),
        2,
        "admin view sees both tags"
    );
}

#[tokio::test]
async fn malformed_xml_fails_400() {
    let (_simulator, server, _client) = start(Duration::ZERO).await;
    let response = reqwest::Client::new()
        .post(format!("{}/2020-05-31/distribution", server.endpoint()))
        .body("<DistributionConfig><CallerReference>x</Caller")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Code>MalformedXML</Code>")
    );
}

#[tokio::test]
async fn config_without_enabled_fails_400() {
    let (_simulator, server, _client) = start(Duration::ZERO).await;
    let body = "<DistributionConfig xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                <CallerReference>x</CallerReference><Comment></Comment></DistributionConfig>";
    let response = reqwest::Client::new()
        .post(format!("{}/2020-05-31/distribution", server.endpoint()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Code>InvalidArgument</Code>")
    );
}

#[tokio::test]
async fn admin_view_tracks_status() {
    let (simulator, _server, client) = start(LONG_DEPLOY).await;
    let (id, etag) = create(&client, "view-1").await;

    let view = simulator.distribution(&id).unwrap();
    assert_eq!(view.status, DistributionStatus::InProgress);
    assert_eq!(view.etag, etag);
    assert!(view.enabled);
    assert_eq!(view.caller_reference, "view-1");
}

#[tokio::test]
async fn create_alias_held_by_disabled_fails_409() {
    let (simulator, _server, client) = start(Duration::ZERO).await;
    simulator
        .external_create(ExternalCreate {
            enabled: false,
            aliases: vec!["www.example.com".into()],
            ..Default::default()
        })
        .unwrap();
    let mut config = distribution_config("alias-1", true);
    config.aliases = Some(
        Aliases::builder()
            .quantity(1)
            .items("www.example.com")
            .build()
            .unwrap(),
    );

    let error = client
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_cname_already_exists(), "{error:?}");
    assert_eq!(simulator.distributions().len(), 1, "nothing was created");
}

#[tokio::test]
async fn create_above_quota_fails_400() {
    let simulator = Simulator::new(SimulatorSettings {
        max_distributions: 1,
        ..SimulatorSettings::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = simulator.spawn(listener).await.unwrap();
    let client = client(&server.endpoint());
    create(&client, "quota-1").await;

    let error = client
        .create_distribution()
        .distribution_config(distribution_config("quota-2", true))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_too_many_distributions(), "{error:?}");
}
