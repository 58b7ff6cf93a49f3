//! Interoperability of the simulator with boto3, the Python AWS SDK, whose parser
//! differs from the Rust SDK's. Skipped when `python3` with boto3 is not installed.

use std::process::Command;

use cloudfront_lifecycle::simulator::{Simulator, SimulatorSettings};

const SCRIPT: &str = r#"
import sys
import boto3
from botocore.config import Config

client = boto3.client(
    "cloudfront",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
)

def config(reference, enabled):
    return {
        "CallerReference": reference,
        "Comment": "boto3 check",
        "Enabled": enabled,
        "Origins": {"Quantity": 1, "Items": [{
            "Id": "origin-1",
            "DomainName": "origin.example.com",
            "CustomOriginConfig": {
                "HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only",
            },
        }]},
        "DefaultCacheBehavior": {
            "TargetOriginId": "origin-1",
            "ViewerProtocolPolicy": "redirect-to-https",
            "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
        },
    }

def error_code(call):
    try:
        call()
    except client.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return None

created = client.create_distribution_with_tags(DistributionConfigWithTags={
    "DistributionConfig": config("boto3-1", True),
    "Tags": {"Items": [{"Key": "team", "Value": "web"}]},
})
distribution_id = created["Distribution"]["Id"]
arn = created["Distribution"]["ARN"]
etag = created["ETag"]
assert client.get_distribution(Id=distribution_id)["ETag"] == etag, "Get ETag"

listed = client.list_distributions(MaxItems="10")["DistributionList"]
assert listed["Items"][0]["Id"] == distribution_id, "list item"
assert listed["IsTruncated"] is False, "list truncation"

tags = client.list_tags_for_resource(Resource=arn)["Tags"]["Items"]
assert tags == [{"Key": "team", "Value": "web"}], tags

code = error_code(lambda: client.delete_distribution(Id=distribution_id, IfMatch=etag))
assert code == "DistributionNotDisabled", code

current = client.get_distribution_config(Id=distribution_id)
disabled = current["DistributionConfig"]
disabled["Enabled"] = False
updated = client.update_distribution(
    Id=distribution_id, IfMatch=current["ETag"], DistributionConfig=disabled
)
assert updated["ETag"] != etag, "update ETag"

code = error_code(lambda: client.delete_distribution(Id=distribution_id, IfMatch=etag))
assert code == "PreconditionFailed", code
client.delete_distribution(Id=distribution_id, IfMatch=updated["ETag"])
code = error_code(lambda: client.get_distribution(Id=distribution_id))
assert code == "NoSuchDistribution", code
print("boto3 check passed")
"#;

fn boto3_available() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn boto3_lifecycle_round_trip() {
    if !boto3_available() {
        eprintln!("skipping boto3_lifecycle_round_trip: python3 with boto3 is not installed");
        return;
    }
    let simulator = Simulator::new(SimulatorSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = simulator.spawn(listener).await.unwrap();

    let endpoint = server.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SCRIPT, &endpoint])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "boto3 script failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("boto3 check passed"),
        "unexpected output: {stdout}"
    );
}
