#!/usr/bin/env python3
"""Applies the template's API Gateway responses on an emulator that does not read them from the
API's definition (MiniStack ignores `x-amazon-apigateway-gateway-responses`, where SAM puts the
`GatewayResponses` of an `AWS::Serverless::Api`), then deploys the stage again so they take effect.

Usage: emulator-gateway-responses.py <endpoint> <rest api id> <stage>

The responses are read from infra/template.yaml as they are, so the deployed e2e run checks the
template's own response templates through the emulator's gateway.
"""

import os
import sys

import boto3
import yaml

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "template.yaml")


class TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (`!Ref`, `!Sub`, ...) as plain values."""


TemplateLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node)
    if isinstance(node, yaml.ScalarNode)
    else None
)


def main(endpoint: str, api_id: str, stage: str) -> None:
    with open(TEMPLATE, encoding="utf-8") as file:
        template = yaml.load(file, Loader=TemplateLoader)
    responses = template["Resources"]["Api"]["Properties"]["GatewayResponses"]
    client = boto3.client(
        "apigateway",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    for response_type, response in responses.items():
        arguments = {
            "restApiId": api_id,
            "responseType": response_type,
            "responseTemplates": response.get("ResponseTemplates", {}),
        }
        if "StatusCode" in response:
            arguments["statusCode"] = str(response["StatusCode"])
        client.put_gateway_response(**arguments)
    client.create_deployment(restApiId=api_id, stageName=stage)
    print(f"emulator: {len(responses)} gateway responses applied to {api_id}/{stage}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
